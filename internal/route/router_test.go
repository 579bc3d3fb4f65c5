package route

import "testing"

func TestRouterMatch(t *testing.T) {
	var r Router[string]
	r.Add("dify.example.com", "/", "dify-web")
	r.Add("dify.example.com", "/api", "dify-api")
	r.Add("dify.example.com", "/api/v1/admin", "dify-admin")
	r.Add("*.apps.example.com", "/", "apps")
	r.Add("*.example.com", "/", "wild")
	r.Add("only.example.org", "/app", "only-app")
	r.Add("*", "/", "catch-all")
	r.Add("[::1]", "/", "v6")
	tests := []struct {
		name, host, path, want string
	}{
		{"exact_root", "dify.example.com", "/", "dify-web"},
		{"longest_prefix_wins", "dify.example.com", "/api/v1/chat", "dify-api"},
		{"deeper_prefix", "dify.example.com", "/api/v1/admin/users", "dify-admin"},
		{"prefix_is_segment_not_string", "dify.example.com", "/apix", "dify-web"},
		{"host_case_and_port", "DIFY.Example.com:8443", "/api", "dify-api"},
		{"trailing_dot_host", "dify.example.com.", "/api", "dify-api"},
		{"longest_wildcard_suffix", "x.apps.example.com", "/", "apps"},
		{"wildcard_many_labels", "a.b.example.com", "/", "wild"},
		{"wildcard_does_not_match_apex", "example.com", "/", "catch-all"},
		{"wildcard_suffix_lookalike_attack", "evilexample.com", "/", "catch-all"},
		{"no_fallthrough_from_exact_host", "only.example.org", "/other", ""},
		{"exact_host_prefix", "only.example.org", "/app/x", "only-app"},
		{"ipv6_host", "[::1]:8080", "/", "v6"},
		{"unknown_host_catch_all", "other.net", "/x", "catch-all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := r.Match(tc.host, tc.path)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("Match(%q, %q) = %q, %v; want %q", tc.host, tc.path, got, ok, tc.want)
			}
		})
	}
}

func TestRouterUnknownHost404(t *testing.T) {
	var r Router[string]
	r.Add("app.example.com", "/", "app")
	for _, h := range []string{"", "evil.com", "app.example.com.evil.com", "xapp.example.com"} {
		if v, ok := r.Match(h, "/"); ok {
			t.Errorf("host %q matched %q; an unknown host must match nothing", h, v)
		}
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	var r Router[int]
	for i := 0; i < 50; i++ {
		r.Add("app.example.com", "/p"+string(rune('a'+i%26))+string(rune('a'+i/26)), i)
	}
	r.Add("app.example.com", "/", -1)
	for b.Loop() {
		if _, ok := r.Match("app.example.com", "/pzz/x/y"); !ok {
			b.Fatal("no match")
		}
	}
}

// A servlet app reads "/admin;x" as "/admin": the stricter route must win.
func TestRouterMatrixParamBypass(t *testing.T) {
	var r Router[string]
	r.Add("app.example.com", "/", "public")
	r.Add("app.example.com", "/admin", "admin-only")
	for _, p := range []string{"/admin;jsessionid=1", "/admin;/x", "/admin;x/users"} {
		if got, _ := r.Match("app.example.com", p); got != "admin-only" {
			t.Errorf("Match(%q) = %q, want admin-only (path-parameter bypass)", p, got)
		}
	}
}

func TestRouterEachVisitsEveryRoute(t *testing.T) {
	r := &Router[string]{}
	for _, h := range []string{"a.example.com", "*.example.com", "*"} {
		r.Add(h, "/", h)
		r.Add(h, "/api", h+"/api")
	}
	seen := map[string]bool{}
	r.Each(func(v string) { seen[v] = true })
	if len(seen) != 6 {
		t.Fatalf("Each visited %v, want all 6 routes", seen)
	}
}
