// Package web renders what sekisho itself shows people and programs: the
// sign-in and sign-out pages, and error pages or JSON errors. Every response
// it writes carries the request id and the GeneratedHeader, so it is never
// mistaken for the app's.
package web

import (
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

//go:embed templates/*.html
var files embed.FS

var pages = template.Must(template.ParseFS(files, "templates/*.html"))

// GeneratedHeader marks responses that sekisho wrote, as opposed to the app.
// The pipeline removes it from upstream responses, so an app cannot forge it.
const GeneratedHeader = "Sekisho-Generated"

// WantsJSON reports whether the request comes from a program rather than a
// person navigating: it asks for JSON, is a CORS, XHR or upgrade (WebSocket)
// request, or carries a bearer credential. Such clients get JSON errors and 401, never a redirect
// to a sign-in page they cannot follow.
func WantsJSON(r *http.Request) bool {
	h := r.Header
	if a := h.Get("Accept"); strings.Contains(a, "application/json") && !strings.Contains(a, "text/html") {
		return true
	}
	if m := h.Get("Sec-Fetch-Mode"); m == "cors" || m == "no-cors" || m == "websocket" {
		return true
	}
	if h.Get("X-Requested-With") != "" || h.Get("Upgrade") != "" {
		return true
	}
	if strings.Contains(h.Get("Accept"), "text/event-stream") {
		return true // an EventSource or a streaming client, not a page
	}
	for _, k := range []string{"Authorization", "Proxy-Authorization"} {
		if v := h.Get(k); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return true
		}
	}
	return false
}

// FollowsSignIn reports whether a request without a credential should be
// redirected to the sign-in page: a browser loading a page, that is a GET
// or HEAD that is not a program's (WantsJSON). Everything else gets a 401
// it can act on: a redirect would turn a DELETE or a POST into a GET of the
// sign-in page, and an EventSource or an API client cannot sign in.
func FollowsSignIn(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && !WantsJSON(r)
}

// secureHeaders are set on every page sekisho renders.
func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set(GeneratedHeader, "1")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

// Titles for the statuses the gateway answers with.
var titles = map[int]string{
	400: "Bad request", 401: "Sign-in required", 403: "Access denied", 404: "Not found",
	405: "Method not allowed", 408: "Request timeout", 413: "Request too large", 429: "Too many requests", 500: "Gateway error",
	502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
}

// ErrorBody is the JSON error sekisho sends to programs.
type ErrorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

// Error answers with status and a user-facing message (never an internal
// cause: log that separately), as JSON for programs or as a page for people.
func Error(w http.ResponseWriter, r *http.Request, status int, message string) {
	if WantsJSON(r) {
		ErrorJSON(w, r, status, message)
		return
	}
	start(w, status)
	title := titleOf(status)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	data := map[string]any{"Title": title, "Message": message, "RequestID": reqinfo.From(r.Context()).ID}
	if status == http.StatusForbidden {
		// Sign out, then sign in again and come back here.
		data["SignIn"] = "/.sekisho/logout?rd=" + url.QueryEscape(r.URL.RequestURI())
	}
	pages.ExecuteTemplate(w, "error.html", data)
}

// ErrorJSON is Error answered as JSON whatever the request asks for.
func ErrorJSON(w http.ResponseWriter, r *http.Request, status int, message string) {
	ErrorJSONCode(w, r, status, code(titleOf(status)), message)
}

// ErrorJSONCode is ErrorJSON with its own stable error code
// ("api_key_revoked") instead of the one the status gives.
func ErrorJSONCode(w http.ResponseWriter, r *http.Request, status int, errCode, message string) {
	start(w, status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: errCode, Message: message, Status: status, RequestID: reqinfo.From(r.Context()).ID})
}

// start sets the headers every error answer has.
func start(w http.ResponseWriter, status int) {
	secureHeaders(w)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sekisho"`)
	}
}

// titleOf is the page title, and the JSON error code, of a status.
func titleOf(status int) string {
	if title := titles[status]; title != "" {
		return title
	}
	return http.StatusText(status)
}

// Render writes one of the templates with status 200 (or status if not 0).
func Render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	secureHeaders(w)
	data["RequestID"] = reqinfo.From(r.Context()).ID
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, data)
}

// code turns a title into a stable machine-readable error code:
// "Sign-in required" -> "sign_in_required".
func code(title string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			return r
		case 'A' <= r && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, title)
}

// RetryAfter sets Retry-After in whole seconds (at least 1).
func RetryAfter(w http.ResponseWriter, secs float64) {
	n := int(secs + 0.999)
	if n < 1 {
		n = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(n))
}
