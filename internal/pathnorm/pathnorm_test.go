package pathnorm

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		clean   string
		escaped string
		err     error
	}{
		{name: "root", in: "/", clean: "/", escaped: "/"},
		{name: "already_clean", in: "/api/v1/chat", clean: "/api/v1/chat", escaped: "/api/v1/chat"},
		{name: "trailing_slash_kept", in: "/api/", clean: "/api/", escaped: "/api/"},
		{name: "dot-dot_traversal", in: "/a/../b", clean: "/b", escaped: "/b"},
		{name: "dot-dot_traversal_to_admin", in: "/api/../admin/users", clean: "/admin/users", escaped: "/admin/users"},
		{name: "dot-dot_above_root_clamped", in: "/../../etc/passwd", clean: "/etc/passwd", escaped: "/etc/passwd"},
		{name: "dot-dot_only", in: "/..", clean: "/", escaped: "/"},
		{name: "trailing_dot-dot_leaves_slash", in: "/a/b/..", clean: "/a/", escaped: "/a/"},
		{name: "trailing_dot_leaves_slash", in: "/a/.", clean: "/a/", escaped: "/a/"},
		{name: "single_dot_segments", in: "/./a/./b/.", clean: "/a/b/", escaped: "/a/b/"},
		{name: "encoded_dot_dot_%2e%2e", in: "/api/%2e%2e/admin", clean: "/admin", escaped: "/admin"},
		{name: "encoded_dot_dot_mixed_case_%2E%2e", in: "/api/%2E%2e/admin", clean: "/admin", escaped: "/admin"},
		{name: "encoded_dot_dot_half_.%2e", in: "/api/.%2e/admin", clean: "/admin", escaped: "/admin"},
		{name: "encoded_single_dot_%2e", in: "/a/%2e/b", clean: "/a/b", escaped: "/a/b"},
		{name: "three_dots_is_a_name", in: "/a/.../b", clean: "/a/.../b", escaped: "/a/.../b"},
		{name: "dotfile_is_a_name", in: "/a/.env", clean: "/a/.env", escaped: "/a/.env"},
		{name: "double_slash", in: "//admin", clean: "/admin", escaped: "/admin"},
		{name: "double_slash_inside", in: "/api//admin///x", clean: "/api/admin/x", escaped: "/api/admin/x"},
		{name: "double_slash_trailing", in: "/api//", clean: "/api/", escaped: "/api/"},
		{name: "only_slashes", in: "////", clean: "/", escaped: "/"},
		{name: "slash_dot_slash_dot_dot", in: "/a/.//../b", clean: "/b", escaped: "/b"},
		{name: "unreserved_decoded", in: "/%41%62%2D%5F%7E%30", clean: "/Ab-_~0", escaped: "/Ab-_~0"},
		{name: "reserved_kept_encoded_hex_uppercased", in: "/a%3fb%23c%3d", clean: "/a?b#c=", escaped: "/a%3Fb%23c%3D"},
		{name: "space_stays_encoded", in: "/my%20doc", clean: "/my doc", escaped: "/my%20doc"},
		{name: "percent_sign_stays_encoded", in: "/100%25", clean: "/100%", escaped: "/100%25"},
		{name: "double_encoded_dot_dot_is_a_name", in: "/a/%252e%252e/b", clean: "/a/%2e%2e/b", escaped: "/a/%252e%252e/b"},
		{name: "utf8_encoded", in: "/caf%C3%A9", clean: "/café", escaped: "/caf%C3%A9"},
		{name: "utf8_raw_gets_escaped", in: "/café", clean: "/café", escaped: "/caf%C3%A9"},
		{name: "raw_space_gets_escaped", in: "/a b", clean: "/a b", escaped: "/a%20b"},
		{name: "brackets_get_escaped", in: "/[x]", clean: "/[x]", escaped: "/%5Bx%5D"},
		{name: "sub_delims_stay_raw", in: "/a=b,c:d@e!$&'()*+", clean: "/a=b,c:d@e!$&'()*+", escaped: "/a=b,c:d@e!$&'()*+"},
		// Path parameters: Tomcat, Jetty and Spring drop ";..." from each
		// segment, so these would be matched as one path and read as another.
		{name: "path_parameter_dot_dot_escape_/public/..;/admin", in: "/public/..;/admin", err: ErrSemicolon},
		{name: "path_parameter_encoded_%3b_escape", in: "/public/..%3b/admin", err: ErrSemicolon},
		{name: "path_parameter_encoded_%3B_upper", in: "/public/..%3B/admin", err: ErrSemicolon},
		{name: "path_parameter_in_a_segment_/admin;x=1", in: "/admin;x=1/users", err: ErrSemicolon},
		{name: "path_parameter_jsessionid", in: "/app;jsessionid=ABC", err: ErrSemicolon},
		{name: "path_parameter_on_encoded_dots_%2e%2e;", in: "/public/%2e%2e;/admin", err: ErrSemicolon},
		{name: "empty", in: "", err: ErrEmpty},
		{name: "asterisk", in: "*", err: ErrNotAbsolute},
		{name: "relative", in: "a/b", err: ErrNotAbsolute},
		{name: "encoded_slash_rejected", in: "/api%2F..%2Fadmin", err: ErrEncodedSlash},
		{name: "encoded_slash_lowercase_rejected", in: "/api%2f..%2fadmin", err: ErrEncodedSlash},
		{name: "encoded_backslash_rejected", in: "/api%5C..%5Cadmin", err: ErrEncodedBackslash},
		{name: "backslash", in: `/api\..\admin`, err: ErrBackslash},
		{name: "null_byte", in: "/admin%00.html", err: ErrControl},
		{name: "raw_null_byte", in: "/admin\x00", err: ErrControl},
		{name: "encoded_newline", in: "/a%0d%0aSet-Cookie:x", err: ErrControl},
		{name: "raw_tab", in: "/a\tb", err: ErrControl},
		{name: "encoded_del", in: "/a%7f", err: ErrControl},
		{name: "c1_control_encoded", in: "/a%C2%85", err: ErrControl},
		{name: "overlong_utf8", in: "/a/%C0%AE%C0%AE/admin", err: ErrInvalidUTF8},
		{name: "overlong_utf8_slash", in: "/a%C0%AFadmin", err: ErrInvalidUTF8},
		{name: "invalid_utf8_raw", in: "/a\xff", err: ErrInvalidUTF8},
		{name: "truncated_utf8", in: "/a%E2%82", err: ErrInvalidUTF8},
		{name: "bad_escape_short", in: "/a%2", err: ErrBadEscape},
		{name: "bad_escape_trailing_percent", in: "/a%", err: ErrBadEscape},
		{name: "bad_escape_not_hex", in: "/a%zz", err: ErrBadEscape},
		{name: "bad_escape_half_hex", in: "/a%2g", err: ErrBadEscape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clean, escaped, err := Normalize(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Normalize(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			got := [2]string{clean, escaped}
			want := [2]string{tc.clean, tc.escaped}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Normalize(%q) [clean, escaped] mismatch (-want +got):\n%s", tc.in, diff)
			}
			if err != nil {
				return
			}
			// Idempotent: the escaped form is already normal. (Normalize reads
			// escaped paths, so clean is not valid input in general.)
			c2, e2, err := Normalize(escaped)
			if err != nil || c2 != clean || e2 != escaped {
				t.Errorf("Normalize(%q) = %q, %q, %v; want idempotent %q, %q", escaped, c2, e2, err, clean, escaped)
			}
		})
	}
}

// TestNormalizeURLRoundTrip pins the wiring contract: with Path=clean and
// RawPath=escaped, net/url sends escaped to the upstream.
func TestNormalizeURLRoundTrip(t *testing.T) {
	for _, in := range []string{"/a%3Db", "/my%20doc", "/caf%C3%A9", "/%5Bx%5D", "/a%3fb", "/100%25/x", "/a+b"} {
		t.Run(in, func(t *testing.T) {
			clean, escaped, err := Normalize(in)
			if err != nil {
				t.Fatal(err)
			}
			u := &url.URL{Path: clean}
			if clean != escaped {
				u.RawPath = escaped
			}
			if got := u.EscapedPath(); got != escaped {
				t.Errorf("url.URL{Path: %q, RawPath: %q}.EscapedPath() = %q, want %q", clean, escaped, got, escaped)
			}
		})
	}
}

func TestNormalizeErrorNamesOffset(t *testing.T) {
	_, _, err := Normalize("/abc%2Fdef")
	if err == nil || !strings.Contains(err.Error(), "byte 4") || !strings.Contains(err.Error(), "%2F") {
		t.Errorf("error = %v, want it to name %%2F and byte 4", err)
	}
}

func TestHasPrefix(t *testing.T) {
	tests := []struct {
		name, path, prefix string
		want               bool
	}{
		{"exact", "/api", "/api", true},
		{"child", "/api/x", "/api", true},
		{"sibling_with_same_start_apix", "/apix", "/api", false},
		{"matrix_param_bypass_/admin;x_is_under_/admin", "/admin;jsessionid=x", "/admin", true},
		{"matrix_param_deeper", "/admin;x/users", "/admin", true},
		{"sibling_dash", "/api-admin", "/api", false},
		{"shorter", "/ap", "/api", false},
		{"root_matches_all", "/anything/at/all", "/", true},
		{"root_matches_root", "/", "/", true},
		{"slash_prefix_plain_string", "/api/x", "/api/", true},
		{"slash_prefix_does_not_match_bare", "/api", "/api/", false},
		{"empty_prefix_matches_nothing", "/api", "", false},
		{"case_sensitive", "/API/x", "/api", false},
		{"nested", "/a/b/c", "/a/b", true},
		{"nested_sibling", "/a/bc", "/a/b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasPrefix(tc.path, tc.prefix); got != tc.want {
				t.Errorf("HasPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestNormalizeFastPathDoesNotAllocate(t *testing.T) {
	p := "/api/v1/chat-messages/stream"
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := Normalize(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Normalize(%q) allocated %v times, want 0", p, allocs)
	}
}

// checkNormal asserts the properties every Normalize output must have.
func checkNormal(t *testing.T, in, clean, escaped string) {
	t.Helper()
	if !strings.HasPrefix(clean, "/") || !strings.HasPrefix(escaped, "/") {
		t.Fatalf("Normalize(%q) = %q, %q: does not start with /", in, clean, escaped)
	}
	for _, s := range []string{clean, escaped} {
		for _, bad := range []string{"//", "/./", "/../", `\`} {
			if strings.Contains(s, bad) {
				t.Fatalf("Normalize(%q) = %q, %q: contains %q", in, clean, escaped, bad)
			}
		}
		if strings.HasSuffix(s, "/.") || strings.HasSuffix(s, "/..") {
			t.Fatalf("Normalize(%q) = %q, %q: ends in a dot segment", in, clean, escaped)
		}
	}
	if !utf8.ValidString(clean) {
		t.Fatalf("Normalize(%q) clean %q is not UTF-8", in, clean)
	}
	for _, r := range clean {
		if unicode.IsControl(r) {
			t.Fatalf("Normalize(%q) clean %q holds control character %U", in, clean, r)
		}
	}
	for i := 0; i < len(escaped); i++ {
		if c := escaped[i]; c != '/' && c != '%' && !keepRaw(c) {
			t.Fatalf("Normalize(%q) escaped %q holds raw %q", in, escaped, c)
		}
	}
	un, err := url.PathUnescape(escaped)
	if err != nil || un != clean {
		t.Fatalf("Normalize(%q): PathUnescape(%q) = %q, %v; want clean %q", in, escaped, un, err, clean)
	}
	u := &url.URL{Path: clean, RawPath: escaped}
	if got := u.EscapedPath(); got != escaped {
		t.Fatalf("Normalize(%q): url.URL.EscapedPath() = %q, want %q", in, got, escaped)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"/", "/a/../b", "/api/%2e%2e/admin", "//x//y/", "/api%2F..%2Fadmin", "/a%5cb",
		`/a\b`, "/a%00", "/%C0%AE%C0%AE/", "/caf%C3%A9", "/a b", "/%2E%2e%2F", "/a/./b/.",
		"/..%2f..", "/%", "/%%30", "/a;b=c", "/%252e%252e", "/\xc3\xa9", "/a%C2%85",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		clean, escaped, err := Normalize(in)
		if err != nil {
			if clean != "" || escaped != "" {
				t.Fatalf("Normalize(%q) returned %q, %q with error %v", in, clean, escaped, err)
			}
			return
		}
		if strings.Contains(clean, ";") {
			t.Fatalf("Normalize(%q) = %q: a path parameter got through", in, clean)
		}
		checkNormal(t, in, clean, escaped)
		c2, e2, err := Normalize(escaped)
		if err != nil || c2 != clean || e2 != escaped {
			t.Fatalf("not idempotent: Normalize(%q) = %q, %q; Normalize(%q) = %q, %q, %v", in, clean, escaped, escaped, c2, e2, err)
		}
		if isNormal(in) && (clean != in || escaped != in) {
			t.Fatalf("fast path changed %q to %q, %q", in, clean, escaped)
		}
	})
}

func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"clean", "/api/v1/chat-messages/stream"},
		{"dot_segments", "/api/v1/../v2/./chat//messages"},
		{"escapes", "/files/my%20doc/%7Euser/caf%C3%A9"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Normalize(bc.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
