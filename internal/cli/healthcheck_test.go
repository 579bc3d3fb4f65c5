package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.sekisho/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"unhealthy","reason":"audit log cannot be written"}`))
	}))
	defer ts.Close()
	if r := runCLI(t, "", "healthcheck", "--url", ts.URL+"/.sekisho/healthz"); r.code != 0 || !strings.Contains(r.stdout, "healthy") {
		t.Fatalf("healthy gateway: %+v", r)
	}
	status = http.StatusServiceUnavailable
	if r := runCLI(t, "", "healthcheck", "--url", ts.URL+"/.sekisho/healthz"); r.code != ExitError || !strings.Contains(r.stderr, "audit log cannot be written") {
		t.Fatalf("unhealthy gateway: %+v", r)
	}
	if r := runCLI(t, "", "healthcheck", "--url", "http://127.0.0.1:1/.sekisho/healthz"); r.code != ExitError || !strings.Contains(r.stderr, "unhealthy") {
		t.Fatalf("no gateway: %+v", r)
	}
	if r := runCLI(t, "", "healthcheck", "--url", "ftp://x"); r.code != ExitUsage {
		t.Fatalf("bad url: %+v", r)
	}
}
