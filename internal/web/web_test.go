package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

func TestWantsJSON(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    bool
	}{
		{"browser_navigation", map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Sec-Fetch-Mode": "navigate"}, false},
		{"plain_curl", map[string]string{"Accept": "*/*"}, false},
		{"accept_json", map[string]string{"Accept": "application/json"}, true},
		{"fetch_cors", map[string]string{"Sec-Fetch-Mode": "cors"}, true},
		{"xhr", map[string]string{"X-Requested-With": "XMLHttpRequest"}, true},
		{"websocket_upgrade", map[string]string{"Upgrade": "websocket"}, true},
		{"bearer_token", map[string]string{"Authorization": "Bearer abc"}, true},
		{"proxy_bearer_lowercase", map[string]string{"Proxy-Authorization": "bearer abc"}, true},
		{"basic_auth_is_not_bearer", map[string]string{"Authorization": "Basic abc"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := WantsJSON(r); got != tc.want {
				t.Errorf("WantsJSON = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestErrorCarriesRequestID(t *testing.T) {
	for _, accept := range []string{"application/json", "text/html"} {
		t.Run(accept, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept", accept)
			r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{ID: "0123456789abcdef"}))
			w := httptest.NewRecorder()
			Error(w, r, http.StatusForbidden, "You may not <script>.")
			body := w.Body.String()
			if w.Code != 403 || w.Header().Get(GeneratedHeader) != "1" || !strings.Contains(body, "0123456789abcdef") {
				t.Fatalf("%d %v %s", w.Code, w.Header(), body)
			}
			if strings.Contains(body, "<script>") {
				t.Fatal("message not escaped")
			}
			if accept == "application/json" {
				var eb ErrorBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.RequestID != "0123456789abcdef" || eb.Status != 403 || eb.Error != "access_denied" {
					t.Fatalf("JSON body %s: %v", body, err)
				}
			}
			if w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(w.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("missing protective headers: %v", w.Header())
			}
		})
	}
}

// The sign-in page works without JavaScript and is labelled for assistive
// technology: a real form posting to the gateway, labels bound to inputs,
// autocomplete hints, and the error announced.
func TestLoginPageAccessible(t *testing.T) {
	p := &Portal{Local: fakeLogin{}}
	r := httptest.NewRequest("GET", "/.sekisho/login?rd=/x", nil)
	w := httptest.NewRecorder()
	p.loginForm(w, r, 401, "bob", "Wrong username or password.", "sign-in failed")
	body := w.Body.String()
	for _, want := range []string{
		`<html lang="en">`, `<form method="post" action="/.sekisho/login"`,
		`<label for="username">`, `id="username"`, `autocomplete="username"`,
		`<label for="password">`, `id="password"`, `autocomplete="current-password"`,
		`role="alert"`, `aria-describedby="login-error"`, `name="rd" value="/x"`, `value="bob"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("sign-in page needs JavaScript")
	}
}

func TestLoginPageEscapesRedirectTarget(t *testing.T) {
	p := &Portal{Local: fakeLogin{}}
	r := httptest.NewRequest("GET", `/.sekisho/login?rd=%22%3E%3Cscript%3Ealert(1)%3C/script%3E`, nil)
	w := httptest.NewRecorder()
	p.loginForm(w, r, 200, "", "", "sign-in page")
	if strings.Contains(w.Body.String(), "<script>alert") {
		t.Fatal("reflected XSS through rd")
	}
}

type fakeLogin struct{ PasswordLogin }
