package route

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOwned(t *testing.T) {
	for _, h := range []string{"X-Sekisho-User", "x-sekisho-anything", "X_Sekisho_User", "X-SEKISHO-ASSERTION", "X-Forwarded-For",
		"x_forwarded_host", "X-Forwarded-Prefix", "Forwarded", "X-Real-Ip", "X-Request-Id", "True-Client-Ip", "X-Goog-Iap-Jwt-Assertion"} {
		if !owned(h) {
			t.Errorf("owned(%q) = false: a client could speak for the gateway", h)
		}
	}
	for _, h := range []string{"Authorization", "Cookie", "X-Sekisho", "X-Custom", "Sekisho-User", "Accept",
		"X-Real-Ip-Extra", "Forwarded2", "X-Forwarded", "X-Rea1-Ip", "Y-Sekisho-User"} {
		if owned(h) {
			t.Errorf("owned(%q) = true: the app's header would be dropped", h)
		}
	}
}

// TestOwnedAllocatesNothing: owned runs for every header of every request.
func TestOwnedAllocatesNothing(t *testing.T) {
	names := []string{"Accept-Language", "X_Sekisho_User", "X-Forwarded-For", "True-Client-Ip", "Cookie"}
	if n := testing.AllocsPerRun(100, func() {
		for _, h := range names {
			owned(h)
		}
	}); n != 0 {
		t.Errorf("owned allocates %v times per run, want 0", n)
	}
}

func TestStripCookies(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"session_removed_others_kept", []string{"theme=dark; sekisho=abc; lang=en"}, []string{"theme=dark; lang=en"}},
		{"only_session", []string{"sekisho=abc"}, nil},
		{"http2_split_headers", []string{"a=1", "__Host-sekisho=x", "b=2"}, []string{"a=1; b=2"}},
		{"csrf_removed", []string{"sekisho-csrf=t; a=1"}, []string{"a=1"}},
		{"namespace_removed_lookalike_kept", []string{"sekisho2=1; my_sekisho=2; __Secure-Sekisho-x=3"}, []string{"my_sekisho=2"}},
		{"oidc_flow_cookie_removed", []string{"__Host-sekisho-oidc-abcdefabcdef=v; a=1"}, []string{"a=1"}},
		{"untouched_when_absent", []string{"a=1;b=2"}, []string{"a=1;b=2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Cookie": tc.in}
			stripCookies(h)
			if diff := cmp.Diff(tc.want, h.Values("Cookie")); diff != "" {
				t.Errorf("Cookie (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeaderSafe(t *testing.T) {
	if got := headerSafe("alice\r\nX-Sekisho-User: admin"); strings.ContainsAny(got, "\r\n") {
		t.Fatalf("header splitting survived: %q", got)
	}
	if got := headerSafe("plain"); got != "plain" {
		t.Fatalf("headerSafe changed a clean value: %q", got)
	}
}

func FuzzStripCookies(f *testing.F) {
	f.Add("a=1; sekisho=2; b=3")
	f.Add("sekisho=; ;;=; sekisho")
	f.Add("__HOST-Sekisho=1; __Secure-sekisho-oidc-abc=2; x=3")
	f.Add("__HOST-__SeCure-sekisho") // found by the fuzzer: two prefixes
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Cookie": {line}}
		stripCookies(h, "custom-session")
		for _, v := range h.Values("Cookie") {
			for _, part := range strings.Split(v, ";") {
				name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
				name = strings.TrimSpace(name)
				// One prefix, as browsers read them: "__Host-__Secure-sekisho"
				// is a cookie of another name, which sekisho never sets.
				l := strings.ToLower(name)
				if s, ok := strings.CutPrefix(l, "__host-"); ok {
					l = s
				} else {
					l = strings.TrimPrefix(l, "__secure-")
				}
				if strings.HasPrefix(l, "sekisho") || name == "custom-session" {
					t.Fatalf("session cookie survived in %q", v)
				}
			}
		}
	})
}

// TestHeaderNamesCanonical: Rewrite sets its headers by map key without
// canonicalising; a name not in canonical form would sit beside a client's
// canonical header of the same name instead of replacing it, and the app
// could read the client's (spoofed) value.
func TestHeaderNamesCanonical(t *testing.T) {
	for _, n := range []string{HeaderUser, HeaderEmail, HeaderGroups, HeaderAssertion, HeaderRequestID,
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
		if c := http.CanonicalHeaderKey(n); c != n {
			t.Errorf("%q is not canonical (%q)", n, c)
		}
	}
}

// FuzzOwned checks owned against the plain definition (lower case, '_' as
// '-', then compare) for every ASCII name: header names on the wire are
// ASCII tokens, and net/http refuses the rest before sekisho sees them.
func FuzzOwned(f *testing.F) {
	for _, s := range []string{"X-Sekisho-User", "x_forwarded_for", "Forwarded", "X-Real-IP", "Accept", "X-Goog-Iap-Jwt-Assertion", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for i := 0; i < len(name); i++ {
			if name[i] >= 0x80 {
				t.Skip("not ASCII")
			}
		}
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		want := false
		for _, p := range ownedPrefixes {
			want = want || strings.HasPrefix(n, p)
		}
		for _, o := range ownedNames {
			want = want || n == o
		}
		if got := owned(name); got != want {
			t.Errorf("owned(%q) = %v, want %v", name, got, want)
		}
	})
}

// Apps behind nginx, IIS, oauth2-proxy, Authelia, Cloudflare Access or IAP
// trust these headers; a client that could send them through sekisho would
// speak for a proxy it never passed.
func TestOtherProxiesIdentityHeadersOwned(t *testing.T) {
	for _, name := range []string{
		"X-Original-URL", "X-Rewrite-URL", "x_original_url", "X-Auth-Request-User", "X-Auth-Request-Email",
		"X-Forwarded-User", "X-Forwarded-Email", "Remote-User", "Remote-Groups", "X-Remote-User",
		"X-Authentik-Username", "X-Pomerium-Claim-Email", "Cf-Access-Authenticated-User-Email",
		"Cf-Connecting-Ip", "X-Amzn-Oidc-Identity", "X-Ms-Client-Principal-Name", "X-Goog-Authenticated-User-Email",
		"X-Webauth-User", "X-Http-Method-Override", "X-Method-Override", "Client-Ip", "X-Serverless-Authorization",
		"X-Middleware-Subrequest", "X-Invoke-Path", "X-Now-Route-Matches", "X-Auth-Userid", "X-Auth-Email", "X-Auth-Roles",
		"X-Consumer-Username", "X-Authenticated-Userid", "X-Credential-Identifier", "X-Userinfo", "Tailscale-User-Login",
		"X-Vouch-User", "X-Ssl-Client-Dn", "Ssl-Client-Verify", "X-Client-Cert", "X-Client-Verify", "X-Arr-Clientcert", "X-Envoy-Original-Path",
	} {
		if !owned(name) {
			t.Errorf("%s reaches the app from the client", name)
		}
	}
	for _, name := range []string{"Accept", "Authorization", "Content-Type", "X-Trace", "Remote", "X-Original", "X-Auth-Token", "X-Api-Key"} {
		if owned(name) {
			t.Errorf("%s is an ordinary header, but stripped", name)
		}
	}
}

func TestStripListFromConfig(t *testing.T) {
	l, err := NewStripList([]string{"X-Corp-User", "X-Corp-Auth-*"})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-Corp-User": {"a"}, "X_corp_auth_token": {"b"}, "X-Corp-Auth-": {"c"}, "X-Corp-Users": {"keep"}, "Accept": {"keep"}}
	stripOwned(h, &l)
	if len(h) != 2 || h.Get("X-Corp-Users") != "keep" || h.Get("Accept") != "keep" {
		t.Errorf("after strip: %v", h)
	}
	for _, bad := range []string{"", "*", "X Bad", "X-Bad:", "a*b*"} {
		if _, err := NewStripList([]string{bad}); err == nil {
			t.Errorf("NewStripList(%q) accepted a non-name", bad)
		}
	}
}

// Session fixation across routes: an app answers with a Set-Cookie for the
// gateway's session (or the OIDC flow cookie) to plant, replace or clear it.
func TestAppSetCookieForGatewayCookieRemoved(t *testing.T) {
	h := http.Header{"Set-Cookie": {
		"__Host-sekisho=attacker; Path=/; Secure; HttpOnly",
		"sekisho=attacker",
		"__SECURE-SEKISHO=x; Domain=example.com",
		"__Host-sekisho-oidc-abcdef=x",
		" sekisho-csrf=x",
		"custom-session=x",
		"app_session=keep; Path=/",
		"theme=dark",
	}}
	if n := stripSetCookies(h, []string{"custom-session"}); n != 6 {
		t.Errorf("removed %d, want 6", n)
	}
	if got := h["Set-Cookie"]; len(got) != 2 || got[0] != "app_session=keep; Path=/" || got[1] != "theme=dark" {
		t.Errorf("kept %q", got)
	}
	// A nameless cookie "=sekisho=x" is sent back by browsers as "sekisho=x".
	h = http.Header{"Set-Cookie": {"=sekisho=planted", " = __Host-sekisho=planted", "=theme=dark"}}
	if n := stripSetCookies(h, nil); n != 2 || len(h["Set-Cookie"]) != 1 || h["Set-Cookie"][0] != "=theme=dark" {
		t.Errorf("nameless cookies: removed %d, kept %q", n, h["Set-Cookie"])
	}
	h = http.Header{"Set-Cookie": {"sekisho=x"}}
	stripSetCookies(h, nil)
	if _, ok := h["Set-Cookie"]; ok {
		t.Errorf("an emptied Set-Cookie header stayed: %v", h)
	}
}

// An app's Clear-Site-Data: "cookies" would clear the gateway's session on
// the whole site; the cache and storage directives are the app's own.
func TestAppClearSiteDataCookiesRemoved(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{`"cookies"`}, nil},
		{[]string{`"*"`}, nil},
		{[]string{`"cache", "cookies", "storage"`}, []string{`"cache", "storage"`}},
		{[]string{`"cache"`, `"cookies"`}, []string{`"cache"`}},
		{[]string{`"cache", "storage"`}, []string{`"cache", "storage"`}},
	}
	for _, tc := range tests {
		h := http.Header{"Clear-Site-Data": tc.in}
		stripClearSiteData(h)
		if diff := cmp.Diff(tc.want, h["Clear-Site-Data"]); diff != "" {
			t.Errorf("Clear-Site-Data %q (-want +got):\n%s", tc.in, diff)
		}
	}
}

// stripSetCookies runs on every response with a Set-Cookie: nothing is
// copied when nothing is the gateway's.
func TestStripSetCookiesAllocatesNothingWhenNothingIsRemoved(t *testing.T) {
	h := http.Header{"Set-Cookie": {"app=1; Path=/", "theme=dark"}}
	if n := testing.AllocsPerRun(100, func() { stripSetCookies(h, nil) }); n != 0 {
		t.Errorf("stripSetCookies allocates %v times, want 0", n)
	}
}
