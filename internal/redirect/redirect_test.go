package redirect

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func allowGood(host string) bool {
	return host == "good.com" || host == "app.good.com" || host == "::1"
}

func TestSafeNext(t *testing.T) {
	withHosts := Options{AllowedHost: allowGood}
	withHTTP := Options{AllowedHost: allowGood, AllowHTTP: true}
	tests := []struct {
		name string
		raw  string
		opts Options
		ok   bool
	}{
		// Accepted.
		{name: "root", raw: "/", ok: true},
		{name: "path_query_fragment", raw: "/chat?id=1&x=y#end", ok: true},
		{name: "encoded_space_in_path", raw: "/my%20doc", ok: true},
		{name: "encoded_url_in_query", raw: "/go?u=https%3A%2F%2Fx.example%2F", ok: true},
		{name: "double_slash_in_query", raw: "/go?u=//evil.com", ok: true},
		{name: "colon_in_path", raw: "/a:b", ok: true},
		{name: "sekisho_lookalike_is_not_reserved", raw: "/.sekishox/page", ok: true},
		{name: "full_url_allowed_host", raw: "https://good.com/chat?x=1", opts: withHosts, ok: true},
		{name: "full_url_allowed_host_no_path", raw: "https://app.good.com", opts: withHosts, ok: true},
		{name: "full_url_allowed_host_with_port", raw: "https://good.com:8443/x", opts: withHosts, ok: true},
		{name: "full_url_upper_case_scheme_and_host", raw: "HTTPS://GOOD.COM/x", opts: withHosts, ok: true},
		{name: "full_url_ipv6_literal", raw: "https://[::1]:8443/x", opts: withHosts, ok: true},
		{name: "http_when_allowed", raw: "http://good.com/x", opts: withHTTP, ok: true},

		// Refused: other hosts.
		{name: "protocol_relative_//evil.com", raw: "//evil.com"},
		{name: "protocol_relative_with_path", raw: "//evil.com/login"},
		{name: "triple_slash_///evil.com", raw: "///evil.com"},
		{name: "backslash_/\\evil.com", raw: `/\evil.com`},
		{name: "double_backslash_\\\\evil.com", raw: `\\evil.com`},
		{name: "backslash_later_in_path", raw: `/a\b`},
		{name: "backslash_in_query", raw: `/a?u=\evil.com`},
		{name: "backslash_in_fragment", raw: `/a#\evil.com`},
		{name: "scheme_without_slashes_https:evil.com", raw: "https:evil.com", opts: withHosts},
		{name: "scheme_one_slash_https:/evil.com", raw: "https:/evil.com", opts: withHosts},
		{name: "scheme_three_slashes_https:///evil.com", raw: "https:///evil.com", opts: withHosts},
		{name: "full_url_other_host", raw: "https://evil.com/", opts: withHosts},
		{name: "full_url_suffix_host", raw: "https://good.com.evil.com/", opts: withHosts},
		{name: "full_url_trailing_dot_host", raw: "https://good.com./", opts: withHosts},
		{name: "full_url_without_AllowedHost", raw: "https://good.com/"},
		{name: "http_not_allowed", raw: "http://good.com/x", opts: withHosts},
		{name: "userinfo", raw: "https://good.com@evil.com/", opts: withHosts},
		{name: "userinfo_with_port_lookalike", raw: "https://good.com:443@evil.com/", opts: withHosts},
		{name: "userinfo_on_allowed_host", raw: "https://user:pw@good.com/", opts: withHosts},
		{name: "encoded_at_in_host", raw: "https://good.com%40evil.com/", opts: withHosts},
		{name: "encoded_dot_in_host", raw: "https://good%2Ecom/", opts: withHosts},
		{name: "unicode_host_lookalike", raw: "https://good.com\u2044evil.com/", opts: withHosts},
		{name: "empty_port", raw: "https://good.com:/", opts: withHosts},
		{name: "bad_port", raw: "https://good.com:x/", opts: withHosts},
		{name: "javascript_scheme", raw: "javascript:alert(1)", opts: withHosts},
		{name: "javascript_scheme_mixed_case", raw: "JaVaScRiPt:alert(1)", opts: withHosts},
		{name: "data_scheme", raw: "data:text/html,<script>alert(1)</script>", opts: withHosts},
		{name: "other_scheme_ftp", raw: "ftp://good.com/", opts: withHosts},
		{name: "relative_path", raw: "evil.com", opts: withHosts},
		{name: "empty", raw: ""},

		// Refused: whitespace and control characters a browser would strip or fold.
		{name: "tab_in_path", raw: "/\t/evil.com"},
		{name: "newline", raw: "/\n/evil.com"},
		{name: "carriage_return", raw: "/\r/evil.com"},
		{name: "crlf_header_injection", raw: "/x\r\nSet-Cookie: a=b"},
		{name: "tab_in_scheme", raw: "java\tscript:alert(1)", opts: withHosts},
		{name: "leading_space", raw: " /x"},
		{name: "trailing_space", raw: "/x "},
		{name: "leading_space_protocol_relative", raw: " //evil.com"},
		{name: "inner_space", raw: "/a b"},
		{name: "null_byte", raw: "/x\x00"},
		{name: "nbsp", raw: "/\u00a0/evil.com"},
		{name: "zero_width_space", raw: "/\u200b/evil.com"},
		{name: "right_to_left_override", raw: "/\u202eevil"},
		{name: "non_utf8", raw: "/\xff"},

		// Refused: percent-encoded tricks, decoded once and re-checked.
		{name: "encoded_backslash", raw: "/%5Cevil.com"},
		{name: "encoded_backslash_lower", raw: "/%5cevil.com"},
		{name: "encoded_tab", raw: "/%09/evil.com"},
		{name: "encoded_newline", raw: "/%0a/evil.com"},
		{name: "encoded_backslash_in_query", raw: "/a?u=%5Cevil.com"},
		{name: "encoded_tab_in_query", raw: "/a?u=%09"},
		{name: "encoded_newline_in_fragment", raw: "/a#%0d%0a"},
		{name: "encoded_crlf_in_full_url", raw: "https://good.com/%0d%0aSet-Cookie:a=b", opts: withHosts},
		{name: "encoded_slash_protocol_relative", raw: "/%2Fevil.com"},
		{name: "encoded_slashes_only", raw: "%2F%2Fevil.com"},
		{name: "encoded_scheme_colon", raw: "https%3A//evil.com", opts: withHosts},
		{name: "invalid_escape", raw: "/%zz"},

		// Refused: loops through sekisho's own pages.
		{name: "login_loop", raw: "/.sekisho/login?rd=/x"},
		{name: "logout_loop", raw: "/.sekisho/logout"},
		{name: "reserved_bare", raw: "/.sekisho"},
		{name: "login_loop_dot_segments", raw: "/a/../.sekisho/login"},
		{name: "login_loop_encoded_dot", raw: "/%2Esekisho/login"},
		{name: "login_loop_upper_case", raw: "/.SEKISHO/login"},
		{name: "login_loop_full_url", raw: "https://good.com/.sekisho/login", opts: withHosts},

		// Refused: size.
		{name: "over_long", raw: "/" + strings.Repeat("a", MaxLen)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SafeNext(tc.raw, tc.opts)
			want := Fallback
			if tc.ok {
				want = tc.raw
			}
			if diff := cmp.Diff([2]any{want, tc.ok}, [2]any{got, ok}); diff != "" {
				t.Errorf("SafeNext(%q) mismatch (-want +got):\n%s", tc.raw, diff)
			}
		})
	}
}

func TestSafeNextMaxLen(t *testing.T) {
	exact := "/" + strings.Repeat("a", MaxLen-1)
	if _, ok := SafeNext(exact, Options{}); !ok {
		t.Errorf("SafeNext of a %d-byte path refused, want accepted", len(exact))
	}
}

func TestLoginURL(t *testing.T) {
	tests := []struct {
		name, next, want string
	}{
		{"empty", "", "/.sekisho/login"},
		{"path", "/chat", "/.sekisho/login?rd=%2Fchat"},
		{"path_with_query", "/chat?a=1&b=2#x", "/.sekisho/login?rd=%2Fchat%3Fa%3D1%26b%3D2%23x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := LoginURL(tc.next)
			if got != tc.want {
				t.Errorf("LoginURL(%q) = %q, want %q", tc.next, got, tc.want)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if rd := u.Query().Get("rd"); rd != tc.next {
				t.Errorf("rd round trip = %q, want %q", rd, tc.next)
			}
		})
	}
}

// browserHost resolves target against a same-origin base after stripping
// tabs and newlines the way a browser's URL parser does, and returns the
// host it would navigate to ("" when parsing fails).
func browserHost(target string) string {
	stripped := strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, target)
	stripped = strings.Trim(stripped, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	stripped = strings.ReplaceAll(stripped, `\`, "/")
	base, _ := url.Parse("https://gw.internal/start")
	ref, err := url.Parse(stripped)
	if err != nil {
		return ""
	}
	return base.ResolveReference(ref).Hostname()
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{
		"/", "/chat?x=1#y", "//evil.com", `/\evil.com`, `\\evil.com`, "https:evil.com",
		"https://good.com/x", "https://good.com@evil.com", "javascript:alert(1)",
		"/\t/evil.com", "/%5Cevil.com", "/%09/evil.com", "/%2F%2Fevil.com", "/.sekisho/login",
		"https://[::1]:8443/", "http://good.com/", "HTTPS://GOOD.COM", " /x", "/%",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, allowHTTP bool) {
		opts := Options{AllowedHost: allowGood, AllowHTTP: allowHTTP}
		got, ok := SafeNext(raw, opts)
		if !ok {
			if got != Fallback {
				t.Fatalf("SafeNext(%q) refused with %q, want %q", raw, got, Fallback)
			}
			return
		}
		if got != raw {
			t.Fatalf("SafeNext(%q) accepted as %q, want it unchanged", raw, got)
		}
		if strings.HasPrefix(got, "//") || strings.HasPrefix(got, `/\`) {
			t.Fatalf("SafeNext accepted %q", got)
		}
		if strings.ContainsAny(got, "\t\r\n\\") {
			t.Fatalf("SafeNext accepted %q holding tab, newline or backslash", got)
		}
		if h := browserHost(got); h != "gw.internal" && !allowGood(strings.ToLower(h)) {
			t.Fatalf("SafeNext(%q) accepted, browser would go to host %q", raw, h)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("SafeNext accepted %q that net/url cannot parse: %v", got, err)
		}
		if u.Host != "" && !allowGood(strings.ToLower(u.Hostname())) {
			t.Fatalf("SafeNext(%q) accepted host %q", raw, u.Hostname())
		}
		if u.User != nil {
			t.Fatalf("SafeNext(%q) accepted userinfo", raw)
		}
		if u.Scheme != "" && u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
			t.Fatalf("SafeNext(%q) accepted scheme %q", raw, u.Scheme)
		}
		if dec, err := url.PathUnescape(got); err == nil {
			if strings.HasPrefix(dec, "//") || strings.ContainsAny(dec, "\\\t\r\n") {
				t.Fatalf("SafeNext(%q) accepted, decoded form %q is unsafe", raw, dec)
			}
			if h := browserHost(dec); h != "gw.internal" && !allowGood(strings.ToLower(h)) {
				t.Fatalf("SafeNext(%q) accepted, decoded form goes to host %q", raw, h)
			}
		}
	})
}
