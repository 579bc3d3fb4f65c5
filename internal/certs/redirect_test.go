package certs

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHTTPRedirect(t *testing.T) {
	allowed := func(h string) bool { return h == "app.example.com" || h == "::1" }
	tests := []struct {
		name         string
		opts         Options // Mode files with a cert for localhost unless set
		host, target string
		wantStatus   int
		wantLocation string
	}{
		{
			name: "keeps path and query", host: "app.example.com", target: "/chat/a%2Fb?x=1&y=%20z",
			wantStatus: 308, wantLocation: "https://app.example.com/chat/a%2Fb?x=1&y=%20z",
		},
		{
			name: "drops the plain HTTP port", host: "app.example.com:80", target: "/",
			wantStatus: 308, wantLocation: "https://app.example.com/",
		},
		{
			name: "adds the HTTPS port when not 443", opts: Options{HTTPSPort: 8443}, host: "app.example.com:8080", target: "/x",
			wantStatus: 308, wantLocation: "https://app.example.com:8443/x",
		},
		{
			name: "upper-case host is lower-cased", host: "APP.Example.COM", target: "/",
			wantStatus: 308, wantLocation: "https://app.example.com/",
		},
		{
			name: "IPv6 host", host: "[::1]:80", target: "/p",
			wantStatus: 308, wantLocation: "https://[::1]/p",
		},
		{
			name: "scheme-relative path stays on the host", host: "app.example.com", target: "//evil.example/x",
			wantStatus: 308, wantLocation: "https://app.example.com//evil.example/x",
		},
		{name: "open redirect via Host header", host: "evil.example", target: "/", wantStatus: 400},
		{name: "open redirect via Host header with userinfo", host: "app.example.com@evil.example", target: "/", wantStatus: 400},
		{name: "open redirect via Host header with path", host: "evil.example/app.example.com", target: "/", wantStatus: 400},
		{name: "open redirect via Host header with backslash", host: `evil.example\app.example.com`, target: "/", wantStatus: 400},
		{name: "open redirect via suffix match", host: "app.example.com.evil.example", target: "/", wantStatus: 400},
		{name: "empty Host", host: "", target: "/", wantStatus: 400},
		{name: "bad port", host: "app.example.com:99999", target: "/", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Mode = ModeSelfSigned
			opts.AllowedHost = allowed
			m, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("fallback called with TLS on")
			})
			rec := serve(m.HTTPHandler(fallback), tc.host, tc.target)
			if rec.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Header().Get("Location"); got != tc.wantLocation {
				t.Errorf("Location = %q, want %q", got, tc.wantLocation)
			}
			if tc.host != "" && tc.wantStatus == 400 && strings.Contains(rec.Body.String(), tc.host) {
				t.Errorf("400 body echoes the Host header: %q", rec.Body.String())
			}
		})
	}
}

func TestHTTPRedirectDefaultHosts(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	now := time.Now()
	cert, key := ca.issue(t, []string{"*.corp.example", "files.example.com", "10.0.0.7"}, now.Add(-time.Hour), now.Add(time.Hour))
	files := Options{Mode: ModeFiles, CertFile: writeFile(t, dir+"/c.pem", cert), KeyFile: writeFile(t, dir+"/k.pem", key)}
	acmeOpts := Options{Mode: ModeACME, ACME: ACMEOptions{Domains: []string{"App.Sekisho.Test"}, CacheDir: t.TempDir()}}

	tests := []struct {
		name string
		opts Options
		host string
		want int
	}{
		{name: "self-signed localhost", opts: Options{Mode: ModeSelfSigned}, host: "localhost", want: 308},
		{name: "self-signed loopback IP", opts: Options{Mode: ModeSelfSigned}, host: "127.0.0.1:80", want: 308},
		{name: "self-signed other host", opts: Options{Mode: ModeSelfSigned}, host: "evil.example", want: 400},
		{name: "files DNS name", opts: files, host: "files.example.com", want: 308},
		{name: "files wildcard", opts: files, host: "wiki.corp.example", want: 308},
		{name: "files wildcard does not cover two labels", opts: files, host: "a.b.corp.example", want: 400},
		{name: "files IP", opts: files, host: "10.0.0.7", want: 308},
		{name: "files other host", opts: files, host: "evil.example", want: 400},
		{name: "acme domain", opts: acmeOpts, host: "app.sekisho.test", want: 308},
		{name: "acme other host", opts: acmeOpts, host: "evil.sekisho.test", want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rec := serve(m.HTTPHandler(nil), tc.host, "/"); rec.Code != tc.want {
				t.Errorf("status = %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

func TestHTTPHandlerModes(t *testing.T) {
	t.Run("mode off serves fallback", func(t *testing.T) {
		m, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg := m.TLSConfig(); cfg != nil {
			t.Errorf("TLSConfig() = %v, want nil in mode off", cfg)
		}
		h := m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
		if rec := serve(h, "anything", "/"); rec.Code != http.StatusTeapot {
			t.Errorf("status = %d, want fallback's 418", rec.Code)
		}
	})
	t.Run("acme challenge path is not redirected", func(t *testing.T) {
		m, err := New(Options{Mode: ModeACME, ACME: ACMEOptions{Domains: []string{"app.sekisho.test"}, CacheDir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		rec := serve(m.HTTPHandler(nil), "app.sekisho.test", "/.well-known/acme-challenge/no-such-token")
		if rec.Code != http.StatusNotFound {
			t.Errorf("status = %d, want 404 for an unknown token", rec.Code)
		}
		rec = serve(m.HTTPHandler(nil), "evil.example", "/.well-known/acme-challenge/no-such-token")
		if rec.Code != http.StatusForbidden {
			t.Errorf("status = %d, want 403 for a challenge on a host not configured", rec.Code)
		}
	})
}

func TestHSTS(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		maxAge time.Duration
		want   []string
	}{
		{name: "default one year over TLS", url: "https://app.example.com/", want: []string{"max-age=31536000"}},
		{name: "custom max-age over TLS", url: "https://app.example.com/", maxAge: 90 * time.Minute, want: []string{"max-age=5400"}},
		{name: "not sent over plain HTTP", url: "http://app.example.com/", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
			rec := httptest.NewRecorder()
			HSTS(next, tc.maxAge).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.url, nil))
			if diff := cmp.Diff(tc.want, rec.Header().Values("Strict-Transport-Security")); diff != "" {
				t.Errorf("Strict-Transport-Security (-want +got):\n%s", diff)
			}
			if rec.Code != 204 {
				t.Errorf("status = %d, want next's 204", rec.Code)
			}
		})
	}
}

func FuzzRedirectHost(f *testing.F) {
	for _, s := range []string{"app.example.com", "app.example.com:80", "evil.example", "app.example.com@evil", "[::1]:80", "a/b", "APP.EXAMPLE.COM"} {
		f.Add(s, "/p?q=1")
	}
	h := &redirector{allowed: func(h string) bool { return h == "app.example.com" }}
	f.Fuzz(func(t *testing.T, host, path string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(http.MethodGet, "http://placeholder"+path, nil)
		if err != nil {
			return
		}
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		loc := rec.Header().Get("Location")
		switch rec.Code {
		case http.StatusPermanentRedirect:
			if !strings.HasPrefix(loc, "https://app.example.com/") {
				t.Fatalf("Host %q path %q redirected to %q", host, path, loc)
			}
		case http.StatusBadRequest:
			if loc != "" {
				t.Fatalf("400 with Location %q", loc)
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

func serve(h http.Handler, host, target string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "http://placeholder"+target, nil)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
