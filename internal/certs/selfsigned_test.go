package certs

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

func TestSelfSigned(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// first and second are the options of two New calls on one DataDir.
		firstHosts, secondHosts []string
		later                   time.Duration // clock advance before the second New
		corrupt                 bool          // overwrite the cached cert between the calls
		wantSame                bool          // second serves the first's certificate
		wantNames               []string      // DNS and IP names of the second certificate
	}{
		{
			name: "generated once and reused", wantSame: true,
			wantNames: []string{"localhost", "127.0.0.1", "::1"},
		},
		{
			name: "reused when hosts only reordered", firstHosts: []string{"a.test", "b.test"}, secondHosts: []string{"b.test", "a.test"},
			wantSame: true, wantNames: []string{"a.test", "b.test"},
		},
		{
			name: "regenerated when hosts change", secondHosts: []string{"localhost", "dev.sekisho.test"},
			wantNames: []string{"localhost", "dev.sekisho.test"},
		},
		{
			name: "reused far from expiry", later: 300 * 24 * time.Hour, wantSame: true,
			wantNames: []string{"localhost", "127.0.0.1", "::1"},
		},
		{
			name: "regenerated within 7 days of expiry", later: SelfSignedValidity - 6*24*time.Hour,
			wantNames: []string{"localhost", "127.0.0.1", "::1"},
		},
		{
			name: "regenerated when cache is corrupt", corrupt: true,
			wantNames: []string{"localhost", "127.0.0.1", "::1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := testclock.New(start)
			var logs bytes.Buffer
			opts := Options{
				Mode: ModeSelfSigned, DataDir: dir, SelfSignedHosts: tc.firstHosts, Now: clock.Now,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			}
			first := servedLeaf(t, opts)
			if !strings.Contains(logs.String(), fingerprint(first)) {
				t.Errorf("log does not carry the SHA-256 fingerprint %s:\n%s", fingerprint(first), logs.String())
			}
			fi, err := os.Stat(filepath.Join(dir, SelfSignedKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("key file mode = %o, want 600", perm)
			}
			if tc.corrupt {
				writeFile(t, filepath.Join(dir, SelfSignedCertFile), []byte("junk"))
			}
			clock.Advance(tc.later)
			opts.SelfSignedHosts = tc.secondHosts
			if opts.SelfSignedHosts == nil {
				opts.SelfSignedHosts = tc.firstHosts
			}
			second := servedLeaf(t, opts)

			if got := first.Equal(second); got != tc.wantSame {
				t.Errorf("second certificate same as first = %v, want %v", got, tc.wantSame)
			}
			var names []string
			names = append(names, second.DNSNames...)
			for _, ip := range second.IPAddresses {
				names = append(names, ip.String())
			}
			if diff := cmp.Diff(tc.wantNames, names); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if second.NotAfter.Sub(clock.Now()) < SelfSignedRenewBefore {
				t.Errorf("served certificate expires %v, within renewal window of %v", second.NotAfter, clock.Now())
			}
			// Each name verifies against the certificate itself as root.
			roots := x509.NewCertPool()
			roots.AddCert(second)
			for _, n := range tc.wantNames {
				if _, err := second.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, CurrentTime: clock.Now()}); err != nil {
					t.Errorf("verify for %q: %v", n, err)
				}
			}
			if second.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("key algorithm %v, want ECDSA", second.PublicKeyAlgorithm)
			}
		})
	}
}

func TestSelfSignedWithoutDataDir(t *testing.T) {
	first := servedLeaf(t, Options{Mode: ModeSelfSigned})
	second := servedLeaf(t, Options{Mode: ModeSelfSigned})
	if first.Equal(second) {
		t.Error("without a data dir each start should make a new certificate; got the same one twice")
	}
}

// servedLeaf starts a Manager and returns the leaf it serves to a client
// asking for localhost.
func servedLeaf(t *testing.T, opts Options) *x509.Certificate {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	leaf, err := handshake(t, m.TLSConfig(), "localhost", nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return leaf
}
