package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestACMEPebble obtains a certificate from pebble, Let's Encrypt's ACME
// test server, through a TLS handshake on a real listener, then serves it
// from the cache with pebble stopped.
//
// pebble is found through $SEKISHO_PEBBLE or PATH; install it with
// test/tools/install-pebble.sh DIR. Without it the test is skipped, except
// under CI (env CI set), where it fails.
func TestACMEPebble(t *testing.T) {
	bin := findPebble(t)
	const domain = "app.sekisho.test"
	dir := t.TempDir()

	// pebble's own HTTPS certificate, from a CA the Manager is told to trust.
	ca := newTestCA(t)
	now := time.Now()
	pebbleCert, pebbleKey := ca.issue(t, []string{"127.0.0.1", "localhost"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	rootsFile := writeFile(t, filepath.Join(dir, "test-ca.pem"), ca.pem)

	// The gateway's listeners, so pebble's config can name their ports.
	httpsLn := listen(t)
	httpLn := listen(t)
	pebble := startPebble(t, bin, dir, pebbleConfig{
		certFile:  writeFile(t, filepath.Join(dir, "pebble.crt"), pebbleCert),
		keyFile:   writeFile(t, filepath.Join(dir, "pebble.key"), pebbleKey),
		httpPort:  port(httpLn),
		tlsPort:   port(httpsLn),
		rootsPool: ca.pool(),
	})

	cacheDir := filepath.Join(dir, "acme")
	opts := Options{
		Mode: ModeACME,
		ACME: ACMEOptions{
			DirectoryURL: pebble.dirURL,
			Email:        "ops@sekisho.test",
			Domains:      []string{domain},
			CacheDir:     cacheDir,
			CARootsFile:  rootsFile,
		},
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: m.TLSConfig(), ReadHeaderTimeout: time.Minute}
	go srv.ServeTLS(httpsLn, "", "")
	go (&http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: time.Minute}).Serve(httpLn)
	t.Cleanup(func() { srv.Close() })

	pebbleRoots := pebble.roots(t)
	conn, err := tls.Dial("tcp", httpsLn.Addr().String(), &tls.Config{ServerName: domain, RootCAs: pebbleRoots})
	if err != nil {
		t.Fatalf("handshake for %s (the Manager should have obtained a certificate from pebble): %v", domain, err)
	}
	state := conn.ConnectionState()
	conn.Close()
	issued := state.PeerCertificates[0]
	t.Run("chains to pebble root", func(t *testing.T) {
		if len(state.VerifiedChains) == 0 {
			t.Fatal("no verified chain")
		}
		chain := state.VerifiedChains[0]
		if root := chain[len(chain)-1]; !pebbleRoots.Equal(poolOf(root)) {
			t.Errorf("chain ends at %v, not at pebble's root", root.Subject)
		}
		if err := issued.VerifyHostname(domain); err != nil {
			t.Error(err)
		}
	})
	t.Run("cached in CacheDir", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(cacheDir, domain))
		if err != nil {
			t.Fatalf("cache entry: %v", err)
		}
		if !bytes.Contains(data, []byte("CERTIFICATE")) {
			t.Fatalf("cache entry %s holds no certificate", filepath.Join(cacheDir, domain))
		}
	})
	t.Run("served from cache with pebble stopped", func(t *testing.T) {
		pebble.stop()
		m2, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := handshake(t, m2.TLSConfig(), domain, pebbleRoots)
		if err != nil {
			t.Fatalf("handshake from cache: %v", err)
		}
		if !leaf.Equal(issued) {
			t.Errorf("served serial %v, want the cached %v", leaf.SerialNumber, issued.SerialNumber)
		}
	})
}

func findPebble(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SEKISHO_PEBBLE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SEKISHO_PEBBLE: %v", err)
		}
		return p
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	const msg = "pebble (ACME test server) not found: run test/tools/install-pebble.sh DIR and set SEKISHO_PEBBLE=DIR/pebble"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

type pebbleConfig struct {
	certFile, keyFile string
	httpPort, tlsPort int
	rootsPool         *x509.CertPool // trusts certFile
}

type pebbleProc struct {
	dirURL, mgmtURL string
	client          *http.Client
	stop            func()
}

// startPebble runs pebble on free loopback ports and waits until its
// directory answers. It is killed at test end.
func startPebble(t *testing.T, bin, dir string, c pebbleConfig) *pebbleProc {
	t.Helper()
	listenAddr, mgmtAddr := freeAddr(t), freeAddr(t)
	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	cfg.Pebble = map[string]any{
		"listenAddress":                  listenAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    c.certFile,
		"privateKey":                     c.keyFile,
		"httpPort":                       c.httpPort,
		"tlsPort":                        c.tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"retryAfter":                     map[string]int{"authz": 0, "order": 0},
		"profiles": map[string]any{
			"default": map[string]any{"description": "sekisho test", "validityPeriod": 7776000},
		},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, filepath.Join(dir, "pebble-config.json"), data)

	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pebble %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})

	p := &pebbleProc{
		dirURL:  "https://" + listenAddr + "/dir",
		mgmtURL: "https://" + mgmtAddr,
		client: &http.Client{
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.rootsPool}},
			Timeout:   10 * time.Second,
		},
		stop: stop,
	}
	// Wait for the directory: a readiness wait, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		resp, err := p.client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited before serving its directory:\n%s", out.String())
		case <-ctx.Done():
			t.Fatalf("pebble directory %s did not answer: %v\n%s", p.dirURL, err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// roots fetches pebble's issuing root from its management interface.
func (p *pebbleProc) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: status %d, %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble root is not PEM: %q", body)
	}
	return pool
}

func (ca *testCA) pool() *x509.CertPool { return poolOf(ca.cert) }

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
