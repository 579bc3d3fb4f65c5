package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/testenv"
)

// reloadBase is a config with two variants a reload alternates between.
// VARIANT is replaced by a pool setting, so that every other reload
// rebuilds the pool, and the other carries it over.
const reloadBase = `version: 1
shutdown_grace: 2s
pools: [{name: app, urls: ["{{UPSTREAM}}"], max_fails: MAXFAILS}]
rules: RULES
routes:
  - {name: app, host: "*", pool: app, stream_idle_timeout: 30s, policy: {groups: [GROUPS]}}
`

func reloadConfig(maxFails int, groups, rules string) string {
	return strings.NewReplacer("MAXFAILS", fmt.Sprint(maxFails), "GROUPS", groups, "RULES", rules).Replace(reloadBase)
}

// A hundred reloads while requests arrive at a steady rate: not one
// request fails, whether its reload rebuilt the pool or carried it over,
// and every reload is counted and audited.
func TestReloadUnderLoadFailsNoRequest(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng", "[]"))
	e.AddUser("alice", pw, "", "eng")
	c := e.Login("alice", pw)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(2 * time.Millisecond) // about 2000 requests a second in all
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				status, body, _ := e.Get(c, "/api/x")
				if status == 200 && strings.Contains(body, "ok") {
					ok.Add(1)
				} else {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %q", status, body))
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	const reloads = 100
	for i := 0; i < reloads; i++ {
		rules := "[]"
		if i%3 == 0 {
			rules = `[{priority: 10, description: "allow loopback", match: {ip_ranges: ["127.0.0.0/8", "::1/128"]}, action: allow}]`
		}
		if err := e.Reload(reloadConfig(3+i%2, "eng, ml", rules)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests during %d reloads, %d failed", ok.Load()+failed.Load(), reloads, failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during reloads; the first: %v", failed.Load(), firstFailure.Load())
	}
	if ok.Load() < reloads {
		t.Fatalf("only %d requests went through during %d reloads: the load did not overlap them", ok.Load(), reloads)
	}
	waitAudit(t, e, `"reason":"config reload applied`)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(e.Audit.String(), `"reason":"config reload applied`) != reloads && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(e.Audit.String(), `"reason":"config reload applied`); n != reloads {
		t.Errorf("%d audit lines for %d applied reloads", n, reloads)
	}
}

// The attack: a user taken out of a route's group keeps using the app
// until someone restarts the gateway. After the reload, the next request
// is refused.
func TestReloadRemovedGroupRefusedOnNextRequest(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng, contractors", "[]"))
	e.AddUser("carol", pw, "", "contractors")
	c := e.Login("carol", pw)
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Fatalf("before the reload carol gets %d, want 200", status)
	}
	if err := e.Reload(reloadConfig(3, "eng", "[]")); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := e.Get(c, "/x"); status != http.StatusForbidden {
		t.Fatalf("after the reload removed her group carol gets %d, want 403", status)
	}
}

// A broken file (a typo, a pool that does not exist, a rule that does not
// compile) changes nothing: the old config keeps serving, the error names
// every problem with its file:line, and the refusal is audited.
func TestReloadBrokenConfigKeepsTheOldOne(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng", "[]"))
	e.AddUser("alice", pw, "", "eng")
	c := e.Login("alice", pw)
	broken := strings.Replace(reloadConfig(3, "ml", `[{priority: 10, description: bad, match: {expr: "request.nope =="}, action: deny}]`),
		"pool: app,", "pool: missing,", 1)
	err := e.Reload(broken)
	if !errors.Is(err, server.ErrReloadRefused) {
		t.Fatalf("broken reload: %v, want ErrReloadRefused", err)
	}
	for _, want := range []string{"test.yaml:6", "missing", "test.yaml:4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not name %q:\n%v", want, err)
		}
	}
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Fatalf("after a refused reload alice gets %d: the old config is not in force", status)
	}
	if _, err := e.ParseConfig("version: 1\nroutes: [{name: app, host: \"*\"\n"); err == nil {
		t.Error("a file that does not parse was accepted")
	}
	waitAudit(t, e, `config reload refused: test.yaml:6`)
}

// A setting that takes a restart (here the session lifetime) refuses the
// whole reload, naming it and its line: the route change beside it is not
// applied either (no half-applied change).
func TestReloadRestartOnlySettingAppliesNothing(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng, ml", "[]"))
	e.AddUser("mia", pw, "", "ml")
	c := e.Login("mia", pw)
	next := strings.Replace(reloadConfig(3, "eng", "[]"), "shutdown_grace: 2s\n", "shutdown_grace: 2s\nsession: {lifetime: 1h}\n", 1)
	err := e.Reload(next)
	if !errors.Is(err, server.ErrReloadRefused) || !strings.Contains(err.Error(), "test.yaml:3: session.lifetime changed: it takes a restart") {
		t.Fatalf("reload changing session: %v", err)
	}
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Fatalf("the refused reload's route change was applied: mia gets %d", status)
	}
	next = strings.Replace(reloadConfig(3, "eng", "[]"), "shutdown_grace: 2s\n", "shutdown_grace: 2s\nlisten: {max_header_bytes: 4096}\n", 1)
	if err := e.Reload(next); err == nil || !strings.Contains(err.Error(), "listen.max_header_bytes changed") {
		t.Fatalf("reload changing listen.max_header_bytes: %v", err)
	}
}

// sse opens an event stream as c and returns its lines.
func sse(t *testing.T, e *testenv.Env, c *http.Client) (<-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/events", nil)
	res, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		cancel()
		t.Fatalf("event stream: %d", res.StatusCode)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if l := sc.Text(); l != "" {
				lines <- l
			}
		}
	}()
	return lines, func() { cancel(); res.Body.Close() }
}

func eventSource(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "" {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for {
			typ, msg, err := conn.Read(r.Context())
			if err != nil {
				return
			}
			conn.Write(r.Context(), typ, msg)
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ended waits for the stream to end, failing after d.
func ended(t *testing.T, lines <-chan string, d time.Duration, what string) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, open := <-lines:
			if !open {
				return
			}
		case <-deadline:
			t.Fatalf("%s still open after %s", what, d)
		}
	}
}

// flowing checks that the stream still delivers events.
func flowing(t *testing.T, lines <-chan string, what string) {
	t.Helper()
	for n := 0; n < 5; n++ {
		select {
		case _, open := <-lines:
			if !open {
				t.Fatalf("%s was ended", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s stopped delivering", what)
		}
	}
}

// The attack: a chat stream or WebSocket opened before the user lost
// access keeps flowing for hours after the reload that took it away. Open
// streams are decided again by the reload: the user who lost access loses
// the stream; the one who kept it keeps it.
func TestReloadEndsStreamsNoLongerAdmitted(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng, contractors", "[]"))
	e.Upstream.Handler = eventSource
	e.AddUser("alice", pw, "", "eng")
	e.AddUser("carol", pw, "", "contractors")
	alice, carol := e.Login("alice", pw), e.Login("carol", pw)
	aliceLines, closeA := sse(t, e, alice)
	defer closeA()
	carolLines, closeC := sse(t, e, carol)
	defer closeC()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.URL, "http")+"/ws", &websocket.DialOptions{HTTPClient: carol})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	flowing(t, aliceLines, "alice's stream before the reload")
	flowing(t, carolLines, "carol's stream before the reload")

	if err := e.Reload(reloadConfig(3, "eng", "[]")); err != nil {
		t.Fatal(err)
	}
	ended(t, carolLines, 5*time.Second, "carol's event stream")
	if _, _, err := ws.Read(ctx); err == nil {
		t.Fatal("carol's WebSocket still delivers after the reload took her access away")
	}
	flowing(t, aliceLines, "alice's stream after the reload")
	waitAudit(t, e, `"user":"carol","identity_kind":"session","provider":"local","decision":"deny","reason":"open stream ended: the reloaded config no longer admits`)

	// The route itself gone: alice's stream ends too.
	if err := e.Reload(strings.Replace(reloadConfig(3, "eng", "[]"), `host: "*"`, `host: "other.example"`, 1)); err != nil {
		t.Fatal(err)
	}
	ended(t, aliceLines, 5*time.Second, "alice's stream on a route no longer there")
}

// The attack: signing out (or `sekisho user disable`) does not end the chat
// stream the session had open. Once the revocation reaches the replica,
// the stream is ended.
func TestRevokedSessionLosesItsOpenStream(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng", "[]"))
	e.Upstream.Handler = eventSource
	e.AddUser("alice", pw, "", "eng")
	e.AddUser("bob", pw, "", "eng")
	alice, bob := e.Login("alice", pw), e.Login("bob", pw)
	aliceLines, closeA := sse(t, e, alice)
	defer closeA()
	bobLines, closeB := sse(t, e, bob)
	defer closeB()
	flowing(t, bobLines, "bob's stream")
	if err := e.Store().SetDisabled(context.Background(), "bob", true); err != nil {
		t.Fatal(err)
	}
	ended(t, bobLines, 10*time.Second, "a disabled user's stream")
	flowing(t, aliceLines, "alice's stream")
}

// waitAudit waits for the audit log (written in batches) to hold want.
func waitAudit(t *testing.T, e *testenv.Env, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.Audit.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the audit log lacks %s:\n%s", want, e.Audit.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sekisho's own endpoints return what they did, and the pipeline writes it
// into the audit line: the sign-in names who signed in, a refused sign-in
// form says why.
func TestGatewayEndpointsOutcomeInTheAuditLine(t *testing.T) {
	e := testenv.Start(t, reloadConfig(3, "eng", "[]"))
	e.AddUser("alice", pw, "", "eng")
	e.Login("alice", pw)
	res, err := e.Client().PostForm(e.URL+"/.sekisho/login", map[string][]string{"username": {"alice"}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	waitAudit(t, e, `"path":"/.sekisho/login","client_ip":"127.0.0.1","user":"alice","identity_kind":"session","provider":"local","decision":"gateway","reason":"signed in"`)
	waitAudit(t, e, `"decision":"gateway","reason":"sign-in refused: CSRF check failed"`)
}

// Rotating session.keys by reload: the new key listed first seals new
// sessions while the old one still opens the cookies it sealed; dropping
// the old key by a second reload ends those sessions (the attack it
// answers: a leaked session key, whose cookies must stop working without a
// restart).
func TestReloadRotatesSessionKeys(t *testing.T) {
	old, fresh := make([]byte, 32), make([]byte, 32)
	rand.Read(old)
	rand.Read(fresh)
	t.Setenv("SEKISHO_TEST_KEY_OLD", base64.StdEncoding.EncodeToString(old))
	t.Setenv("SEKISHO_TEST_KEY_NEW", base64.StdEncoding.EncodeToString(fresh))
	withKeys := func(keys string) string {
		return strings.Replace(reloadConfig(3, "eng", "[]"), "shutdown_grace: 2s\n", "shutdown_grace: 2s\nsession: {keys: ["+keys+"]}\n", 1)
	}
	e := testenv.Start(t, withKeys("env:SEKISHO_TEST_KEY_OLD"))
	e.AddUser("alice", pw, "", "eng")
	before := e.Login("alice", pw)
	u, _ := url.Parse(e.URL)
	oldCookies := before.Jar.Cookies(u) // sealed with the old key (a request may re-seal the jar's)
	if err := e.Reload(withKeys("env:SEKISHO_TEST_KEY_NEW, env:SEKISHO_TEST_KEY_OLD")); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := e.Get(before, "/x"); status != 200 {
		t.Fatalf("a cookie sealed with the old key, both keys listed: %d, want 200", status)
	}
	after := e.Login("alice", pw)
	if err := e.Reload(withKeys("env:SEKISHO_TEST_KEY_NEW")); err != nil {
		t.Fatal(err)
	}
	stale := e.Client()
	stale.Jar.SetCookies(u, oldCookies)
	if status, _, _ := e.Get(stale, "/x"); status != http.StatusFound {
		t.Fatalf("a cookie sealed with the dropped key: %d, want 302 to sign in", status)
	}
	if status, _, _ := e.Get(after, "/x"); status != 200 {
		t.Fatalf("a cookie sealed with the new key: %d, want 200", status)
	}
	t.Setenv("SEKISHO_TEST_KEY_NEW", "not base64!")
	if err := e.Reload(withKeys("env:SEKISHO_TEST_KEY_NEW")); err == nil || !strings.Contains(err.Error(), "session.keys[0]") {
		t.Fatalf("a malformed key: %v, want the reload refused naming session.keys[0]", err)
	}
	if status, _, _ := e.Get(after, "/x"); status != 200 {
		t.Fatalf("after a refused key rotation: %d, want the keys in force kept", status)
	}
}
