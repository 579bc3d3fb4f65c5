package certs

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/acme"
)

// TestACMEHostPolicy pins that a handshake for a name outside the configured
// domains never reaches the CA: otherwise anyone could make the gateway
// request certificates for arbitrary names (and burn the rate limits).
func TestACMEHostPolicy(t *testing.T) {
	var hits atomic.Int64
	ca := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "stub CA: nothing here", http.StatusNotFound)
	}))
	t.Cleanup(ca.Close)

	m, err := New(Options{
		Mode: ModeACME,
		ACME: ACMEOptions{
			DirectoryURL: ca.URL + "/dir",
			Domains:      []string{"app.sekisho.test"},
			CacheDir:     t.TempDir(),
			HTTPClient:   ca.Client(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.TLSConfig()
	if diff := cmp.Diff([]string{"h2", "http/1.1", acme.ALPNProto}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}

	tests := []struct {
		name     string
		sni      string
		wantHits bool
	}{
		{name: "certificate for unconfigured SNI refused without contacting CA", sni: "evil.sekisho.test"},
		{name: "certificate for sibling of configured domain refused", sni: "sekisho.test"},
		{name: "missing SNI refused", sni: ""},
		{name: "configured domain does contact the CA", sni: "app.sekisho.test", wantHits: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			if _, err := handshake(t, cfg, tc.sni, nil); err == nil {
				t.Fatal("handshake succeeded; the stub CA cannot issue certificates")
			}
			if got := hits.Load() > before; got != tc.wantHits {
				t.Errorf("CA contacted = %v, want %v", got, tc.wantHits)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	m, err := New(Options{Mode: ModeSelfSigned})
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.TLSConfig()
	if cfg.MinVersion != 0x0303 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if slices.Contains(cfg.NextProtos, acme.ALPNProto) {
		t.Errorf("NextProtos %v offers %s outside acme mode", cfg.NextProtos, acme.ALPNProto)
	}
	if diff := cmp.Diff([]string{"h2", "http/1.1"}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}
}
