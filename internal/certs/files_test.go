package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

func TestNewFiles(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ca := newTestCA(t)
	goodCert, goodKey := ca.issue(t, []string{"app.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	_, otherKey := ca.issue(t, []string{"app.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	expiredCert, expiredKey := ca.issue(t, []string{"app.example.com"}, now.Add(-48*time.Hour), time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC))
	futureCert, futureKey := ca.issue(t, []string{"app.example.com"}, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), now.Add(90*24*time.Hour))
	notPEM := []byte("this is not a certificate\n")

	tests := []struct {
		name      string
		cert, key []byte // nil: the file does not exist
		noPaths   bool
		want      []string
	}{
		{name: "valid pair", cert: goodCert, key: goodKey},
		{name: "chain with intermediate after leaf", cert: append(append([]byte{}, goodCert...), ca.pem...), key: goodKey},
		{
			name: "mismatched key", cert: goodCert, key: otherKey,
			want: []string{"private key DIR/key.pem does not match the certificate in DIR/cert.pem"},
		},
		{
			name: "expired cert", cert: expiredCert, key: expiredKey,
			want: []string{"certificate DIR/cert.pem expired on 2026-02-28T00:00:00Z"},
		},
		{
			name: "not yet valid cert", cert: futureCert, key: futureKey,
			want: []string{"certificate DIR/cert.pem is not valid before 2026-04-01T00:00:00Z"},
		},
		{
			name: "cert not PEM", cert: notPEM, key: goodKey,
			want: []string{"certificate file DIR/cert.pem is not PEM: it has no CERTIFICATE block"},
		},
		{
			name: "key not PEM", cert: goodCert, key: notPEM,
			want: []string{"private key file DIR/key.pem is not PEM: it has no PRIVATE KEY block"},
		},
		{
			name: "missing cert file", key: goodKey,
			want: []string{"certificate file: open DIR/cert.pem: no such file or directory"},
		},
		{
			name: "every problem listed: expired and mismatched", cert: expiredCert, key: otherKey,
			want: []string{
				"certificate DIR/cert.pem expired on 2026-02-28T00:00:00Z",
				"private key DIR/key.pem does not match the certificate in DIR/cert.pem",
			},
		},
		{
			name: "every problem listed: missing cert and key not PEM", key: notPEM,
			want: []string{
				"certificate file: open DIR/cert.pem: no such file or directory",
				"private key file DIR/key.pem is not PEM: it has no PRIVATE KEY block",
			},
		},
		{
			name: "every problem listed: both missing",
			want: []string{
				"certificate file: open DIR/cert.pem: no such file or directory",
				"private key file: open DIR/key.pem: no such file or directory",
			},
		},
		{
			name: "no paths", noPaths: true,
			want: []string{
				"tls cert_file is empty: files mode needs a certificate file",
				"tls key_file is empty: files mode needs a private key file",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Mode: ModeFiles, Now: func() time.Time { return now }}
			if !tc.noPaths {
				opts.CertFile = filepath.Join(dir, "cert.pem")
				opts.KeyFile = filepath.Join(dir, "key.pem")
			}
			if tc.cert != nil {
				writeFile(t, opts.CertFile, tc.cert)
			}
			if tc.key != nil {
				writeFile(t, opts.KeyFile, tc.key)
			}

			checkErr := Check(opts)
			m, err := New(opts)
			if diff := cmp.Diff(tc.want, errorLines(err, dir)); diff != "" {
				t.Errorf("New error lines (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, errorLines(checkErr, dir)); diff != "" {
				t.Errorf("Check error lines (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			leaf, err := handshake(t, m.TLSConfig(), "app.example.com", nil)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			want, err := x509.ParseCertificate(pemDER(t, tc.cert))
			if err != nil {
				t.Fatal(err)
			}
			if !leaf.Equal(want) {
				t.Errorf("served %v, want the certificate from the file", leaf.Subject)
			}
		})
	}
}

func TestFilesReload(t *testing.T) {
	clock := testclock.New(time.Now())
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certA, keyA := ca.issue(t, []string{"a.example.com"}, clock.Now().Add(-time.Hour), clock.Now().Add(24*time.Hour))
	certB, keyB := ca.issue(t, []string{"b.example.com"}, clock.Now().Add(-time.Hour), clock.Now().Add(24*time.Hour))
	writeFile(t, certFile, certA)
	writeFile(t, keyFile, keyA)

	m, err := New(Options{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, Now: clock.Now, ReloadInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		t.Helper()
		leaf, err := handshake(t, m.TLSConfig(), "x", nil)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return leaf.Subject.CommonName
	}
	// replace writes a pair with an unmistakably new modification time.
	mtime := time.Now()
	replace := func(cert, key []byte) {
		t.Helper()
		mtime = mtime.Add(time.Minute)
		for path, data := range map[string][]byte{certFile: cert, keyFile: key} {
			writeFile(t, path, data)
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}

	steps := []struct {
		name    string
		do      func()
		reload  bool // call Reload after do
		want    string
		wantErr bool
	}{
		{name: "initial pair", do: func() {}, want: "a.example.com"},
		{name: "changed files not looked at before the interval", do: func() { replace(certB, keyB) }, want: "a.example.com"},
		{name: "changed files loaded after the interval", do: func() { clock.Advance(11 * time.Second) }, want: "b.example.com"},
		{name: "broken key on Reload keeps previous pair", do: func() { replace(certA, []byte("garbage")) }, reload: true, want: "b.example.com", wantErr: true},
		{name: "broken key at handshake keeps previous pair", do: func() { clock.Advance(11 * time.Second) }, want: "b.example.com"},
		{name: "fixed files on Reload", do: func() { replace(certA, keyA) }, reload: true, want: "a.example.com"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			if st.reload {
				err := m.Reload()
				if (err != nil) != st.wantErr {
					t.Fatalf("Reload error = %v, want error %v", err, st.wantErr)
				}
			}
			if got := served(); got != st.want {
				t.Errorf("served %q, want %q", got, st.want)
			}
		})
	}
}
