package oidc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/session"
)

// TestRealProviderDownAfterDiscoveryCached: a provider that dies while its
// discovery is cached must not get browsers sent to it; signed-in sessions
// keep working; once it is back, sign-ins redirect again.
func TestRealProviderDownAfterDiscoveryCached(t *testing.T) {
	g := newGateway(t)
	port := freePort(t)
	o := startRealOP(t, g, port)
	g.setup(t, realProvider(o.issuer, ""), nil) // DiscoveryTTL 5m: discovery stays cached throughout
	c := browser(t)
	signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")
	s := cookieSession(t, c, g)

	wantRedirect := func(t *testing.T, when string) {
		t.Helper()
		resp, body := get(t, noFollow(browser(t)), g.URL+StartURL("test", "/app"))
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), o.issuer+"/") {
			t.Fatalf("%s: start status %d to %q, want 302 to the provider; body:\n%s", when, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if !g.h.Reachable("test") {
			t.Errorf("%s: Reachable(test) = false", when)
		}
	}
	wantUnreachable := func(t *testing.T, when string) {
		t.Helper()
		resp, body := get(t, noFollow(browser(t)), g.URL+StartURL("test", "/app"))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" ||
			!strings.Contains(body, "cannot reach it") || !strings.Contains(body, "req-test") {
			t.Fatalf("%s: start status %d to %q, want the 503 unreachable page with the request id; body:\n%s",
				when, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		for _, ck := range resp.Cookies() {
			if strings.Contains(ck.Name, "sekisho-oidc-") {
				t.Errorf("%s: the unreachable page set a flow cookie %s", when, ck.Name)
			}
		}
		if g.h.Reachable("test") {
			t.Errorf("%s: Reachable(test) = true", when)
		}
	}

	wantRedirect(t, "provider up")
	o.kill()
	g.clock.Advance(DefaultRetryAfter + time.Second) // discovery still cached; the provider was last heard from 6s ago
	wantUnreachable(t, "sign-in with a dead provider whose discovery is cached")
	wantUnreachable(t, "second sign-in within RetryAfter (no new probe)")

	resp, body := get(t, c, g.URL+"/app")
	if got := sessionOf(t, resp, body); got.ID != s.ID {
		t.Errorf("the signed-in session changed during the outage: %s, was %s", got.ID, s.ID)
	}
	if _, err := g.h.Refresh(context.Background(), s); !errors.Is(err, ErrUnreachable) {
		t.Errorf("refresh during the outage: %v, want ErrUnreachable (keep the session)", err)
	}
	if _, ok := g.tokens.get(s.ID); !ok {
		t.Error("the outage made sekisho forget the session's refresh token")
	}

	o = startRealOP(t, g, port) // same issuer
	wantUnreachable(t, "provider back, but within RetryAfter of the last probe")
	g.clock.Advance(DefaultRetryAfter + time.Second)
	wantRedirect(t, "provider back after RetryAfter")
	signInSession(t, browser(t), g, o, StartURL("test", "/app"), "alice", "alice-pw")
}

// flakyTransport passes requests to the network, except for paths set to
// fail (a connection error); it counts requests per path.
type flakyTransport struct {
	mu   sync.Mutex
	fail map[string]bool
	hits map[string]int
	hold chan struct{} // not nil: discovery requests wait for it to close
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	fail, hold := f.fail[r.URL.Path], f.hold
	f.mu.Unlock()
	if hold != nil && r.URL.Path == discoveryPath {
		<-hold
	}
	if fail {
		return nil, errors.New("dial tcp: connection refused (test)")
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (f *flakyTransport) set(path string, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[path] = fail
}

func (f *flakyTransport) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

const discoveryPath = "/.well-known/openid-configuration"

// fakeGateway is a gateway on a fake provider reached through a
// flakyTransport.
func fakeGateway(t *testing.T) (*gateway, *fakeOP, *flakyTransport) {
	t.Helper()
	op := newFakeOP(t)
	ft := &flakyTransport{fail: map[string]bool{}, hits: map[string]int{}}
	g := newGateway(t)
	g.setup(t, ProviderOptions{Name: "corp", Label: "Corp", Issuer: op.URL, ClientID: "client-1", ClientSecret: []byte("s")},
		func(o *Options) { o.HTTPClient = &http.Client{Transport: ft} })
	return g, op, ft
}

// startStatus starts a sign-in and returns the status and Location.
func startStatus(t *testing.T, g *gateway) (int, string) {
	t.Helper()
	resp, _ := get(t, noFollow(browser(t)), g.URL+StartURL("corp", "/app"))
	return resp.StatusCode, resp.Header.Get("Location")
}

func TestReachability(t *testing.T) {
	t.Run("forged codes answered with a 5xx cannot take sign-in down", func(t *testing.T) {
		// Anyone can start a flow and bring a garbage code; a provider that
		// answers it with a 5xx must not make sign-in "unreachable" for all.
		g, op, _ := fakeGateway(t)
		c := browser(t)
		q, _ := startFlow(t, c, g, "corp", "/app")
		op.respondRaw(http.StatusBadGateway, `upstream down`)
		resp, body := get(t, c, g.URL+CallbackPath+"?code=garbage&state="+q.Get("state"))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("callback with a 502 token endpoint: status %d, want the refused page (502); body:\n%s", resp.StatusCode, body)
		}
		if !g.h.Reachable("corp") {
			t.Fatal("a 5xx to a forged code marked the provider unreachable")
		}
		if st, loc := startStatus(t, g); st != http.StatusFound || !strings.HasPrefix(loc, op.URL+"/authorize") {
			t.Fatalf("start after the 5xx: status %d to %q, want 302 to the provider", st, loc)
		}
	})

	t.Run("forged codes refused by the provider cannot take sign-in down", func(t *testing.T) {
		g, op, _ := fakeGateway(t)
		c := browser(t)
		q, _ := startFlow(t, c, g, "corp", "/app")
		op.respondRaw(http.StatusBadRequest, `{"error":"invalid_grant"}`)
		get(t, c, g.URL+CallbackPath+"?code=forged&state="+q.Get("state"))
		if !g.h.Reachable("corp") {
			t.Fatal("a refused code marked the provider unreachable")
		}
		g.clock.Advance(DefaultRetryAfter + time.Second)
		if st, _ := startStatus(t, g); st != http.StatusFound {
			t.Errorf("start: status %d, want 302", st)
		}
	})

	t.Run("a browser hanging up mid-exchange cannot mark the provider down", func(t *testing.T) {
		g, op, _ := fakeGateway(t)
		p := g.h.providers["corp"]
		d, err := p.discover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		op.respond("x")
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the browser went away
		if _, err := p.exchange(ctx, d, g.URL+CallbackPath, "c", "v"); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("exchange with a cancelled request: %v, want ErrUnreachable", err)
		}
		if !g.h.Reachable("corp") {
			t.Error("a cancelled request marked the provider unreachable")
		}
		// A start that hangs up while the probe it began is in flight: the
		// probe goes on without it and its success counts.
		g.clock.Advance(DefaultRetryAfter + time.Second)
		p.ready(ctx)
		if _, err := p.ready(context.Background()); err != nil {
			t.Fatalf("ready after a cancelled start: %v", err)
		}
		if !g.h.Reachable("corp") {
			t.Error("a cancelled start marked the provider unreachable")
		}
	})

	t.Run("a flood of sign-ins probes the provider once", func(t *testing.T) {
		g, _, ft := fakeGateway(t)
		if st, _ := startStatus(t, g); st != http.StatusFound {
			t.Fatalf("first start: status %d", st)
		}
		for _, down := range []bool{false, true} {
			ft.set(discoveryPath, down)
			g.clock.Advance(DefaultRetryAfter + time.Second)
			before := ft.count(discoveryPath)
			hold := make(chan struct{})
			ft.mu.Lock()
			ft.hold = hold
			ft.mu.Unlock()
			var wg sync.WaitGroup
			statuses := make([]int, 20)
			for i := range statuses {
				wg.Go(func() { statuses[i], _ = startStatus(t, g) })
			}
			time.Sleep(50 * time.Millisecond) // let most of them join the probe; the count holds whatever the timing
			close(hold)
			wg.Wait()
			ft.mu.Lock()
			ft.hold = nil
			ft.mu.Unlock()
			want := http.StatusFound
			if down {
				want = http.StatusServiceUnavailable
			}
			for i, st := range statuses {
				if st != want {
					t.Errorf("down %v: start %d: status %d, want %d", down, i, st, want)
				}
			}
			if n := ft.count(discoveryPath) - before; n != 1 {
				t.Errorf("down %v: 20 concurrent starts read discovery %d times, want 1", down, n)
			}
		}
	})

	t.Run("sign-out does not send the browser to an unreachable provider", func(t *testing.T) {
		g, op, ft := fakeGateway(t)
		if st, _ := startStatus(t, g); st != http.StatusFound {
			t.Fatalf("first start: status %d", st)
		}
		ft.set(discoveryPath, true)
		g.clock.Advance(DefaultRetryAfter + time.Second)
		target, err := g.h.EndSession(httptestRequest(g), session.Session{ID: session.NewID(), Provider: "corp"})
		if err != nil || strings.HasPrefix(target, op.URL) || !strings.HasPrefix(target, SignedOutPath+"?") {
			t.Fatalf("EndSession = %q, %v; want the local signed-out page", target, err)
		}
		_, body := get(t, browser(t), g.URL+target)
		if !strings.Contains(body, "Corp cannot be reached right now") {
			t.Errorf("signed-out page does not say Corp cannot be reached:\n%s", body)
		}
	})

	t.Run("a keys outage during refresh does not end the session", func(t *testing.T) {
		g, op, ft := fakeGateway(t)
		p := g.h.providers["corp"]
		s := session.Session{ID: session.NewID(), User: "u1@example.com", Provider: "corp", IssuedAt: g.clock.Now()}
		if err := g.h.putTokens(context.Background(), p, s, "u1", keptTokens{RefreshToken: "rt"}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		idt := op.mint(t, map[string]any{"iss": op.URL, "aud": "client-1", "sub": "u1", "email": "u1@example.com", "email_verified": true,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		op.respond(idt)
		ft.set("/keys", true)
		if _, err := g.h.Refresh(context.Background(), s); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrRefreshRefused) {
			t.Fatalf("refresh with the keys unreachable: %v, want ErrUnreachable (keep the session)", err)
		}
		if g.h.Reachable("corp") {
			t.Error("a keys outage left the provider reachable")
		}
		if _, ok := g.tokens.get(s.ID); !ok {
			t.Error("the keys outage made sekisho forget the refresh token")
		}
		ft.set("/keys", false)
		if _, err := g.h.Refresh(context.Background(), s); err != nil {
			t.Fatalf("refresh after the outage: %v", err)
		}
		if !g.h.Reachable("corp") {
			t.Error("a successful refresh left the provider unreachable")
		}
	})

	t.Run("unknown provider is not reachable", func(t *testing.T) {
		g, _, _ := fakeGateway(t)
		if g.h.Reachable("nope") {
			t.Error("Reachable(nope) = true")
		}
		if !g.h.Reachable("corp") {
			t.Error("Reachable(corp) = false before any contact")
		}
	})
}
