package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/testenv"
	"github.com/sekisho/sekisho/internal/testenv/pgtest"
	"github.com/sekisho/sekisho/internal/testenv/redistest"
)

// Two replicas with separate data dirs on one Postgres: an account added
// through one is there on the other, a session signed in on one is valid
// on the other, and a sign-out or a revoked key on one holds on the other
// within the revocation poll.
func TestTwoReplicasShareOnePostgres(t *testing.T) {
	t.Setenv("SEKISHO_TEST_DATABASE_URL", pgtest.Start(t))
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("SEKISHO_TEST_SESSION_KEY", base64.StdEncoding.EncodeToString(key))
	cfg := `version: 1
store: {driver: postgres, url: env:SEKISHO_TEST_DATABASE_URL}
session: {keys: [env:SEKISHO_TEST_SESSION_KEY]}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
`
	a, b := testenv.Start(t, cfg), testenv.Start(t, cfg)
	if a.DataDir == b.DataDir {
		t.Fatal("the replicas share a data dir")
	}
	a.AddUser("alice", pw, "alice@example.com")
	cb := b.Login("alice", pw) // the account added through A signs in on B
	ub, _ := url.Parse(b.URL)
	ua, _ := url.Parse(a.URL)
	ca := a.Client()
	ca.Jar.SetCookies(ua, cb.Jar.Cookies(ub))
	if status, _, _ := a.Get(ca, "/x"); status != 200 {
		t.Fatalf("B's session on A = %d, want 200", status)
	}

	tok, rec, err := apikey.Generate(rand.Reader, apikey.Spec{Name: "ci", Routes: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store().CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, 200, "/x", "Proxy-Authorization", "Bearer "+tok)

	// Sign out on A; the same cookie is refused on B.
	logoutOn(t, a, ca)
	if _, err := a.Store().RevokeAPIKey(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s1, _, _ := b.Get(cb, "/x")
		s2, _, _ := b.Get(b.Client(), "/x", "Proxy-Authorization", "Bearer "+tok)
		if s1 == http.StatusFound && s2 == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after sign-out and revocation on A, B answers the session %d and the key %d, want 302 and 401", s1, s2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logoutOn signs c out on e, through the sign-out form.
func logoutOn(t *testing.T, e *testenv.Env, c *http.Client) {
	t.Helper()
	status, body, _ := e.Get(c, "/.sekisho/logout")
	m := strings.SplitN(body, `name="csrf" value="`, 2)
	if status != 200 || len(m) != 2 {
		t.Fatalf("logout page: %d", status)
	}
	res, err := c.PostForm(e.URL+"/.sekisho/logout", url.Values{"csrf": {m[1][:strings.IndexByte(m[1], '"')]}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

// With every poll an hour apart, only Postgres's notifications can carry
// a change from one replica to the other: a sign-out, a disabled account
// and a revoked key on A reach B at once. Then A is killed, and B goes on
// serving the users signed in on A without a new sign-in.
func TestReplicasHearChangesThroughNotifications(t *testing.T) {
	t.Setenv("SEKISHO_TEST_DATABASE_URL", pgtest.Start(t))
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("SEKISHO_TEST_SESSION_KEY", base64.StdEncoding.EncodeToString(key))
	cfg := `version: 1
store: {driver: postgres, url: env:SEKISHO_TEST_DATABASE_URL}
session: {keys: [env:SEKISHO_TEST_SESSION_KEY]}
api_keys: {poll_interval: 1h}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
`
	opts := server.Options{PollEvery: time.Hour}
	a, b := testenv.StartWith(t, cfg, opts), testenv.StartWith(t, cfg, opts)
	a.AddUser("alice", pw, "")
	a.AddUser("bob", pw, "")
	a.AddUser("carol", pw, "")
	alice, bob, carol := a.Login("alice", pw), a.Login("bob", pw), a.Login("carol", pw)
	ua, _ := url.Parse(a.URL)
	ub, _ := url.Parse(b.URL)
	onB := func(c *http.Client) *http.Client {
		cb := b.Client()
		cb.Jar.SetCookies(ub, c.Jar.Cookies(ua))
		return cb
	}
	aliceB, bobB, carolB := onB(alice), onB(bob), onB(carol)
	tok, rec, err := apikey.Generate(rand.Reader, apikey.Spec{Name: "ci", Routes: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store().CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*http.Client{aliceB, bobB, carolB} {
		if status, _, _ := b.Get(c, "/x"); status != 200 {
			t.Fatalf("a session from A on B = %d, want 200", status)
		}
	}
	waitStatus(t, b, 200, "/x", "Proxy-Authorization", "Bearer "+tok) // created on A, known on B

	start := time.Now()
	logoutOn(t, a, alice)
	if err := a.Store().SetDisabled(context.Background(), "bob", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store().RevokeAPIKey(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, http.StatusUnauthorized, "/x", "Proxy-Authorization", "Bearer "+tok)
	for name, c := range map[string]*http.Client{"signed-out alice": aliceB, "disabled bob": bobB} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if status, _, _ := b.Get(c, "/x"); status == http.StatusFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's session still works on B: the notification did not arrive (polls are an hour apart)", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("sign-out, disable and key revocation on A reached B in %s", time.Since(start).Round(time.Millisecond))

	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := b.Get(carolB, "/x"); status != 200 {
		t.Fatalf("with A gone, carol (signed in on A) gets %d on B, want 200 without a new sign-in", status)
	}
}

// Postgres stopped under load, then started again: signed-in sessions and
// cached API keys go on working (no database read per request), a new
// password sign-in gets a clear page, and once the database is back
// everything works again by itself: sign-in, and a revocation made then
// reaches the gateway.
func TestPostgresOutageUnderLoad(t *testing.T) {
	pg := pgtest.StartOwn(t)
	t.Setenv("SEKISHO_TEST_DATABASE_URL", pg.URL())
	cfg := `version: 1
store: {driver: postgres, url: env:SEKISHO_TEST_DATABASE_URL}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
`
	e := testenv.StartWith(t, cfg, server.Options{PollEvery: 200 * time.Millisecond})
	e.AddUser("alice", pw, "")
	e.AddUser("bob", pw, "")
	alice := e.Login("alice", pw)
	tok := createKey(t, e, "ci", "app")
	waitStatus(t, e, 200, "/x", "Proxy-Authorization", "Bearer "+tok)

	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, headers := range [][]string{nil, {"Proxy-Authorization", "Bearer " + tok}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := alice
			if headers != nil {
				c = e.Client()
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if status, _, _ := e.Get(c, "/x", headers...); status == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, status)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	pg.Stop()
	time.Sleep(time.Second) // the load runs on against a database that is gone
	bobC := e.Client()
	token := e.LoginForm(bobC)
	res, err := bobC.PostForm(e.URL+"/.sekisho/login", url.Values{"csrf": {token}, "username": {"bob"}, "password": {pw}, "rd": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "Try again in a moment") {
		t.Errorf("password sign-in with the database down: %d %q, want 503 and a page saying to try again", res.StatusCode, body)
	}
	pg.Restart()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests with a session or a cached key while Postgres stopped and started, %d failed", ok.Load()+failed.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across the outage; the first got %v", failed.Load(), firstFailure.Load())
	}

	// Back by itself: a new sign-in works, and a revocation arrives.
	deadline := time.Now().Add(30 * time.Second)
	for e.PostLogin(e.Client(), "bob", pw, "/").StatusCode != http.StatusSeeOther {
		if time.Now().After(deadline) {
			t.Fatal("password sign-in did not come back after the database did")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := e.Store().RevokeAPIKey(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e, http.StatusUnauthorized, "/x", "Proxy-Authorization", "Bearer "+tok)
}

// The attack: password guessing spread over the replicas behind a load
// balancer, each seeing fewer failures than its limit. With Redis, the
// replicas share one budget: five wrong guesses in all, three on A and two
// on B, lock the account on both; `sekisho user unlock` lifts it on both.
func TestSignInThrottleSharedByReplicas(t *testing.T) {
	rs := redistest.Start(t)
	t.Setenv("SEKISHO_TEST_REDIS_URL", "redis://"+rs.Addr+"/0")
	t.Setenv("SEKISHO_TEST_DATABASE_URL", pgtest.Start(t))
	cfg := `version: 1
store: {driver: postgres, url: env:SEKISHO_TEST_DATABASE_URL}
redis: {url: env:SEKISHO_TEST_REDIS_URL}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`
	a, b := testenv.Start(t, cfg), testenv.Start(t, cfg)
	a.AddUser("bob", pw, "")
	for i, e := range []*testenv.Env{a, b, a, b, a} {
		if res := e.PostLogin(e.Client(), "bob", "wrong password!!", "/"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, res.StatusCode)
		}
	}
	for name, e := range map[string]*testenv.Env{"A": a, "B": b} {
		if res := e.PostLogin(e.Client(), "bob", pw, "/"); res.StatusCode != http.StatusTooManyRequests {
			t.Errorf("after five guesses spread over two replicas, the right password on %s got %d, want 429", name, res.StatusCode)
		}
	}
	if err := a.Store().UnlockUser(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.PostLogin(b.Client(), "bob", pw, "/").StatusCode != http.StatusSeeOther {
		if time.Now().After(deadline) {
			t.Fatal("user unlock did not lift the shared lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
