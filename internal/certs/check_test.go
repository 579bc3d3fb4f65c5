package certs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	notPEM := writeFile(t, filepath.Join(dir, "roots.txt"), []byte("nope"))
	aFile := writeFile(t, filepath.Join(dir, "file"), []byte("x"))
	acmeOK := ACMEOptions{Domains: []string{"app.example.com"}, CacheDir: filepath.Join(dir, "acme")}

	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{name: "off", opts: Options{}},
		{name: "self-signed defaults", opts: Options{Mode: ModeSelfSigned, DataDir: filepath.Join(dir, "data")}},
		{name: "acme minimal", opts: Options{Mode: ModeACME, ACME: acmeOK}},
		{name: "acme cache dir from data dir", opts: Options{Mode: ModeACME, DataDir: dir, ACME: ACMEOptions{Domains: []string{"app.example.com"}}}},
		{name: "unknown mode", opts: Options{Mode: "letsencrypt"}, want: []string{
			`tls mode "letsencrypt" is unknown (want off, self_signed, files or acme)`,
		}},
		{name: "self-signed bad host and data dir a file", opts: Options{
			Mode: ModeSelfSigned, DataDir: aFile, SelfSignedHosts: []string{"localhost", "bad host"},
		}, want: []string{
			`self-signed host "bad host": has character ' '; use the punycode (xn--) form for international names`,
			"tls data dir DIR/file is not a directory",
		}},
		{name: "acme every problem listed", opts: Options{Mode: ModeACME, HTTPSPort: 70000, ACME: ACMEOptions{
			DirectoryURL: "http://acme.example/dir",
			Email:        "Ops <ops@example.com>",
			Domains:      []string{"*.example.com", "10.0.0.1", "localhost", "a.example.com", "A.example.com", "-x.example.com"},
			CARootsFile:  notPEM,
		}}, want: []string{
			`acme directory url "http://acme.example/dir" must be an https URL`,
			`acme email "Ops <ops@example.com>" is not an email address`,
			`acme domain "*.example.com": wildcards need DNS-01 challenges, which are not supported`,
			`acme domain "10.0.0.1": is an IP address; ACME certificates are for DNS names`,
			`acme domain "localhost": needs at least two labels (like app.example.com)`,
			`acme domain "A.example.com" is listed twice`,
			`acme domain "-x.example.com": label "-x" starts or ends with a hyphen`,
			"acme cache dir is empty: set the data dir or acme cache_dir",
			"acme ca_roots_file: certificate file DIR/roots.txt is not PEM: it has no CERTIFICATE block",
			"tls https port 70000 is out of range",
		}},
		{name: "acme no domains and missing roots file", opts: Options{Mode: ModeACME, ACME: ACMEOptions{
			CacheDir: filepath.Join(dir, "acme"), CARootsFile: filepath.Join(dir, "missing.pem"),
		}}, want: []string{
			"acme domains are empty: name at least one domain to request a certificate for",
			"acme ca_roots_file: certificate file: open DIR/missing.pem: no such file or directory",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.opts)
			if diff := cmp.Diff(tc.want, errorLines(err, dir)); diff != "" {
				t.Errorf("Check error lines (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("writes nothing", func(t *testing.T) {
		for _, sub := range []string{"data", "acme"} {
			if _, err := os.Stat(filepath.Join(dir, sub)); !os.IsNotExist(err) {
				t.Errorf("Check created %s (stat error %v)", sub, err)
			}
		}
	})
}
