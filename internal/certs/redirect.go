package certs

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// redirector sends plain-HTTP requests to https on an allowed host.
type redirector struct {
	allowed func(host string) bool
	port    int // 0 or 443: none in the target
}

func (h *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, ok := redirectHost(r.Host)
	if !ok || !h.allowed(host) {
		// Never echo the Host back: it is attacker-chosen.
		w.Header().Set("X-Sekisho-Error", "unknown-host")
		http.Error(w, "400 bad request: unknown host", http.StatusBadRequest)
		return
	}
	target := "https://" + hostPort(host, h.port) + requestPath(r)
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusPermanentRedirect)
}

// redirectHost returns the host of a Host header, lower-case, without port
// or IPv6 brackets. ok is false for anything that is not a plain host name or
// IP address, so no byte of it can change the shape of the target URL.
func redirectHost(hostHeader string) (host string, ok bool) {
	host = hostHeader
	if h, port, err := net.SplitHostPort(hostHeader); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil && port != "" {
			return "", false
		}
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), true
	}
	host = strings.ToLower(host)
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", false
		}
	}
	return host, true
}

func hostPort(host string, port int) string {
	if port == 0 || port == 443 {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// requestPath is the escaped path and query of r, always starting with one
// "/" followed by a non-"/" so that even a lax client cannot read the target
// as scheme-relative.
func requestPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	return p
}

// HSTS adds Strict-Transport-Security to every response next sends over TLS
// (requests with r.TLS set; browsers ignore the header over plain HTTP and
// RFC 6797 forbids sending it there). maxAge zero or negative means
// DefaultHSTSMaxAge (one year).
//
// includeSubDomains is deliberately left out: sekisho answers for the names
// it is configured with, not for every name under them, and a company's
// sibling hosts (intranet.example.com next to app.example.com) may still be
// plain HTTP; includeSubDomains would make browsers refuse them for maxAge.
// preload is left out for the same reason and because it cannot be undone
// quickly.
func HSTS(next http.Handler, maxAge time.Duration) http.Handler {
	if maxAge <= 0 {
		maxAge = DefaultHSTSMaxAge
	}
	value := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", value)
		}
		next.ServeHTTP(w, r)
	})
}
