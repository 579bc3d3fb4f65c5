package server_test

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv"
	"github.com/sekisho/sekisho/internal/testenv/redistest"
)

const rulesConfig = `version: 1
rules:
  - priority: 10
    description: blocked network
    match: {ip_ranges: ["127.0.0.2/32", "2001:db8::/32"]}
    action: deny
  - priority: 20
    description: no admin API from scanners
    match: {expr: 'request.path.startsWith("/admin") && request.headers["user-agent"].contains("sqlmap")'}
    action: deny
    status: 404
  - priority: 30
    description: waf
    match: {waf: true}
    action: deny
  - priority: 40
    description: would block curl
    match: {expr: 'request.headers["user-agent"].startsWith("curl/")'}
    action: deny
    preview: true
  - priority: 50
    description: anonymous budget per IP
    match: {expr: 'request.path.startsWith("/api/")'}
    action: throttle
    rate: {count: 3, per: 1h}
    key: [ip]
  - priority: 100
    description: interns may not call the admin API
    phase: identity
    match: {expr: '"interns" in identity.groups && request.path.startsWith("/admin")'}
    action: deny
  - priority: 110
    description: chat budget per user
    phase: identity
    match: {expr: 'request.path.startsWith("/chat")'}
    action: throttle
    rate: {count: 2, per: 1h}
    key: [user]
  - priority: 120
    description: tag staff requests
    phase: identity
    match: {expr: '"staff" in identity.groups'}
    action: allow
    add_headers: {X-Staff: "1"}
waf: {groups: [sqli, xss], parse_json: true}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", pool: app, policy: {allow_authenticated: true}}
  - {name: api, host: "*", path: /api, pool: app, policy: {public: true}}
`

func TestRulesThroughTheGateway(t *testing.T) {
	e := testenv.Start(t, rulesConfig)
	e.AddUser("ivan", pw, "", "interns")
	e.AddUser("sam", pw, "", "staff")
	ivan, sam := e.Login("ivan", pw), e.Login("sam", pw)
	anon := e.Client()

	t.Run("expr_edge_rule_before_sign_in", func(t *testing.T) {
		if status, _, _ := e.Get(anon, "/admin/x", "User-Agent", "sqlmap/1.7"); status != 404 {
			t.Fatalf("status %d, want 404", status)
		}
	})
	t.Run("waf_blocks_sqli_probe_before_sign_in", func(t *testing.T) {
		status, _, _ := e.Get(anon, "/search?q=1%27%20OR%20%271%27%3D%271")
		if status != 403 || len(e.Upstream.Requests()) != 0 {
			t.Fatalf("status %d, upstream requests %d", status, len(e.Upstream.Requests()))
		}
	})
	t.Run("identity_rule_interns_no_admin", func(t *testing.T) {
		if status, _, _ := e.Get(ivan, "/admin/users"); status != 403 {
			t.Fatalf("intern on /admin: %d, want 403", status)
		}
		if status, _, _ := e.Get(sam, "/admin/users"); status != 200 {
			t.Fatalf("staff on /admin: %d, want 200", status)
		}
	})
	t.Run("allow_rule_adds_headers", func(t *testing.T) {
		e.Get(sam, "/x")
		if got := e.Upstream.Last().Header.Get("X-Staff"); got != "1" {
			t.Fatalf("X-Staff = %q", got)
		}
	})
	t.Run("per_user_throttle_429_with_retry_after", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if status, _, _ := e.Get(ivan, "/chat"); status != 200 {
				t.Fatalf("request %d: %d", i, status)
			}
		}
		status, _, h := e.Get(ivan, "/chat")
		if status != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("third chat: %d Retry-After %q, want 429 with Retry-After", status, h.Get("Retry-After"))
		}
		if n, err := strconv.Atoi(h.Get("Retry-After")); err != nil || n < 1 {
			t.Fatalf("Retry-After %q", h.Get("Retry-After"))
		}
		if status, _, _ := e.Get(sam, "/chat"); status != 200 {
			t.Fatalf("another user shares the budget: %d", status)
		}
	})
	t.Run("spoofed_xff_does_not_escape_ip_throttle", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			e.Get(anon, "/api/v1", "X-Forwarded-For", "10.9.9."+strconv.Itoa(i))
		}
		if status, _, _ := e.Get(anon, "/api/v1", "X-Forwarded-For", "10.9.9.200"); status != 429 {
			t.Fatalf("status %d: a client rotated X-Forwarded-For to dodge its IP limit", status)
		}
	})
	t.Run("preview_rule_does_not_act", func(t *testing.T) {
		if status, _, _ := e.Get(sam, "/x", "User-Agent", "curl/8.5.0"); status != 200 {
			t.Fatalf("a preview rule acted: %d", status)
		}
	})
	e.Stop()
	log := e.Audit.String()
	for _, want := range []string{`"rule":"20 no admin API from scanners"`, `"rule":"100 interns may not call the admin API"`, `"rule":"110 chat budget per user"`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	t.Run("preview_rule_logged", func(t *testing.T) {
		if !strings.Contains(log, `"preview":true`) || !strings.Contains(log, "would block curl") {
			t.Errorf("preview hit not in the audit log:\n%s", log)
		}
	})
}

// With Redis configured, two replicas share one limit.
func TestRateLimitSharedThroughRedis(t *testing.T) {
	rs := redistest.Start(t)
	os.Setenv("SEKISHO_TEST_REDIS_URL", "redis://"+rs.Addr+"/0")
	t.Cleanup(func() { os.Unsetenv("SEKISHO_TEST_REDIS_URL") })
	cfg := `version: 1
redis: {url: "env:SEKISHO_TEST_REDIS_URL"}
rules:
  - {priority: 1, description: shared budget, match: {expr: "true"}, action: throttle, rate: {count: 4, per: 1h}, key: [all]}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`
	a, b := testenv.Start(t, cfg), testenv.Start(t, cfg)
	ok := 0
	for i := 0; i < 8; i++ {
		e := a
		if i%2 == 1 {
			e = b
		}
		if status, _, _ := e.Get(e.Client(), "/"); status == http.StatusOK {
			ok++
		}
	}
	if ok != 4 {
		t.Fatalf("two replicas allowed %d requests together, want exactly 4", ok)
	}
}
