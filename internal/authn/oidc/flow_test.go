package oidc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/session"
)

func realProvider(issuer, groupsClaim string) ProviderOptions {
	return ProviderOptions{Name: "test", Label: "Test SSO", Issuer: issuer, ClientID: "sekisho", ClientSecret: []byte("op-secret"),
		Scopes: []string{"openid", "email", "profile", "offline_access"}, GroupsClaim: groupsClaim}
}

// TestRealProviderSignIn runs the whole code flow against the real provider
// process, with a plain client that posts the provider's form.
func TestRealProviderSignIn(t *testing.T) {
	for _, tc := range []struct {
		name        string
		groupsClaim string
		keep        []string
		user, pw    string
		wantUser    string
		wantEmail   string
		wantGroups  []string
	}{
		{name: "groups claim", groupsClaim: "groups", user: "alice", pw: "alice-pw",
			wantUser: "alice@example.com", wantEmail: "alice@example.com", wantGroups: []string{"admins", "dev"}},
		{name: "nested realm_access.roles", groupsClaim: "realm_access.roles", user: "alice", pw: "alice-pw",
			wantUser: "alice@example.com", wantEmail: "alice@example.com", wantGroups: []string{"app-user"}},
		{name: "claim name with dots, string value", groupsClaim: "https://example.com/team", user: "alice", pw: "alice-pw",
			wantUser: "alice@example.com", wantEmail: "alice@example.com", wantGroups: []string{"blue"}},
		{name: "keep only the groups policies use", groupsClaim: "groups", keep: []string{"dev"}, user: "alice", pw: "alice-pw",
			wantUser: "alice@example.com", wantEmail: "alice@example.com", wantGroups: []string{"dev"}},
		{name: "unverified email is not trusted", groupsClaim: "groups", user: "bob", pw: "bob-pw",
			wantUser: "test:bob", wantEmail: ""},
		{name: "email that is not an address cannot impersonate a local account", groupsClaim: "groups", user: "carol", pw: "carol-pw",
			wantUser: "test:carol", wantEmail: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			o := startRealOP(t, g, 0)
			p := realProvider(o.issuer, tc.groupsClaim)
			p.KeepGroups = tc.keep
			g.setup(t, p, nil)
			before := time.Now().Add(-2 * time.Second)
			resp, body := signIn(t, browser(t), g, o, StartURL("test", "/app?x=1"), tc.user, tc.pw)
			s := sessionOf(t, resp, body)
			if resp.Request.URL.RawQuery != "x=1" {
				t.Errorf("landed on %s, want /app?x=1", resp.Request.URL)
			}
			if s.User != tc.wantUser || s.Email != tc.wantEmail || s.Provider != "test" {
				t.Errorf("session user %q email %q provider %q, want %q %q test", s.User, s.Email, s.Provider, tc.wantUser, tc.wantEmail)
			}
			if diff := cmp.Diff(tc.wantGroups, s.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			if s.AuthTime.Before(before) || s.AuthTime.After(time.Now().Add(time.Second)) {
				t.Errorf("AuthTime %s is not the sign-in time", s.AuthTime)
			}
			rec, ok := g.tokens.get(s.ID)
			if !ok {
				t.Fatal("no provider tokens kept for the session")
			}
			if bytes.Contains(rec.Sealed, []byte("eyJ")) {
				t.Error("the stored tokens are not sealed (a JWT is visible)")
			}
		})
	}

	t.Run("wrong password at the provider stays at the provider", func(t *testing.T) {
		g := newGateway(t)
		o := startRealOP(t, g, 0)
		g.setup(t, realProvider(o.issuer, ""), nil)
		resp, body := signIn(t, browser(t), g, o, StartURL("test", "/app"), "alice", "wrong")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
			t.Errorf("status %d, want the provider's 401 form; body:\n%s", resp.StatusCode, body)
		}
	})
}

// TestRealProviderMaxAge: a route demanding a recent sign-in sends the
// browser through the provider with max_age/prompt=login, and the callback
// itself refuses an old auth_time from a provider that ignores the request.
func TestRealProviderMaxAge(t *testing.T) {
	t.Run("compliant provider asks for the password again", func(t *testing.T) {
		g := newGateway(t)
		o := startRealOP(t, g, 0)
		g.setup(t, realProvider(o.issuer, ""), nil)
		c := browser(t)
		first := signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")

		// Control: without max_age the provider's SSO session answers at once.
		resp, _ := get(t, c, g.URL+StartURL("test", "/app"))
		if resp.Request.URL.Path != "/app" {
			t.Fatalf("second sign-in without max_age ended at %s, want /app straight from SSO", resp.Request.URL)
		}
		if !NeedsReAuth(first.Identity(), 5*time.Minute, time.Now().Add(10*time.Minute)) {
			t.Fatal("NeedsReAuth is false for a sign-in 10 minutes old and max_age 5m")
		}
		u, ok := g.h.ReAuthURL("test", "/app", 5*time.Minute)
		if !ok {
			t.Fatal("ReAuthURL refused the provider")
		}
		resp, body := get(t, c, g.URL+u)
		if !strings.HasPrefix(resp.Request.URL.String(), o.issuer+"/login") || !strings.Contains(body, "op-password") {
			t.Fatalf("re-auth ended at %s, want the provider's password form", resp.Request.URL)
		}
		s := signInSession(t, c, g, o, u, "alice", "alice-pw")
		if s.AuthTime.Before(first.AuthTime) || s.ID == first.ID {
			t.Errorf("re-auth session %s (auth %s) is not a new sign-in after %s (auth %s)", s.ID, s.AuthTime, first.ID, first.AuthTime)
		}
	})

	t.Run("stale auth_time from a provider that ignores max_age is refused", func(t *testing.T) {
		g := newGateway(t)
		o := startRealOP(t, g, 0, "-ignore-max-age")
		g.setup(t, realProvider(o.issuer, ""), nil)
		g.clock.Advance(10 * time.Minute) // every sign-in at the provider looks 10 minutes old
		c := browser(t)
		signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")
		u, _ := g.h.ReAuthURL("test", "/app", 5*time.Minute)
		resp, body := get(t, c, g.URL+u)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "did not ask you to sign in again") {
			t.Errorf("status %d, want 403 about the stale sign-in; body:\n%s", resp.StatusCode, body)
		}
	})

	t.Run("local accounts get no OIDC re-auth URL", func(t *testing.T) {
		g := newGateway(t)
		g.setup(t, realProvider("https://idp.example.com", ""), nil)
		if u, ok := g.h.ReAuthURL("local", "/app", time.Minute); ok {
			t.Errorf("ReAuthURL(local) = %q, true; want false", u)
		}
	})
}

// cookieSession reads the session the browser holds for g.
func cookieSession(t *testing.T, c *http.Client, g *gateway) session.Session {
	t.Helper()
	u, _ := url.Parse(g.URL)
	req := &http.Request{Host: u.Host, Header: http.Header{}}
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	s, err := g.codec.Read(req)
	if err != nil {
		t.Fatalf("the browser's session: %v", err)
	}
	return s
}

func TestRealProviderRefresh(t *testing.T) {
	g := newGateway(t)
	o := startRealOP(t, g, 0)
	g.setup(t, realProvider(o.issuer, "groups"), nil)
	c := browser(t)
	signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")
	s := cookieSession(t, c, g)
	before, _ := g.tokens.get(s.ID)

	for i := range 2 { // twice: the rotated refresh token works too
		got, err := g.h.Refresh(context.Background(), s)
		if err != nil {
			t.Fatalf("refresh %d: %v", i+1, err)
		}
		if diff := cmp.Diff(s, got); diff != "" {
			t.Errorf("refresh %d changed the session (-old +new):\n%s", i+1, diff)
		}
	}
	after, _ := g.tokens.get(s.ID)
	if bytes.Equal(before.Sealed, after.Sealed) {
		t.Error("the stored refresh token was not replaced by the rotated one")
	}

	t.Run("a refresh token the provider no longer knows ends the session", func(t *testing.T) {
		u, err := g.h.EndSession(httptestRequest(g), s) // forgets the tokens
		if err != nil || u == "" {
			t.Fatalf("EndSession = %q, %v", u, err)
		}
		if _, err := g.h.Refresh(context.Background(), s); !errors.Is(err, ErrNoRefreshToken) {
			t.Errorf("refresh after end-session: %v, want ErrNoRefreshToken", err)
		}
		g.tokens.PutOIDCTokens(context.Background(), before) // a revoked (rotated) refresh token
		if _, err := g.h.Refresh(context.Background(), s); !errors.Is(err, ErrRefreshRefused) {
			t.Errorf("refresh with a rotated-out token: %v, want ErrRefreshRefused", err)
		}
	})
}

func httptestRequest(g *gateway) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, g.URL+"/.sekisho/logout", nil)
	return r
}

func TestRealProviderEndSession(t *testing.T) {
	g := newGateway(t)
	o := startRealOP(t, g, 0)
	g.setup(t, realProvider(o.issuer, ""), nil)
	c := browser(t)
	signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")
	s := cookieSession(t, c, g)

	target, err := g.h.EndSession(httptestRequest(g), s)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != o.issuer+"/end_session" {
		t.Errorf("end-session URL %s, want the provider's end_session_endpoint", got)
	}
	q := u.Query()
	if q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != g.URL+SignedOutPath || q.Get("client_id") != "sekisho" {
		t.Errorf("end-session query %v lacks id_token_hint, client_id or post_logout_redirect_uri %s", q, g.URL+SignedOutPath)
	}
	if _, ok := g.tokens.get(s.ID); ok {
		t.Error("the session's tokens are still stored after EndSession")
	}
	resp, body := get(t, c, target)
	if resp.Request.URL.Path != SignedOutPath || !strings.Contains(body, "signed out of sekisho and of your sign-in provider") {
		t.Errorf("after the provider's logout: %s, body:\n%s", resp.Request.URL, body)
	}
	// The provider's SSO session is gone: the next sign-in shows its form.
	resp, _ = get(t, c, g.URL+StartURL("test", "/app"))
	if !strings.HasPrefix(resp.Request.URL.String(), o.issuer+"/login") {
		t.Errorf("sign-in after logout ended at %s, want the provider's form", resp.Request.URL)
	}

	t.Run("provider without end_session_endpoint: local sign-out, said plainly", func(t *testing.T) {
		op := newFakeOP(t)
		g := newGateway(t)
		g.setup(t, ProviderOptions{Name: "corp", Label: "Corp", Issuer: op.URL, ClientID: "c", ClientSecret: []byte("s")}, nil)
		target, err := g.h.EndSession(httptestRequest(g), session.Session{ID: session.NewID(), Provider: "corp"})
		if err != nil || !strings.HasPrefix(target, SignedOutPath+"?") {
			t.Fatalf("EndSession = %q, %v; want the local signed-out page", target, err)
		}
		_, body := get(t, browser(t), g.URL+target)
		if !strings.Contains(body, "still signed in at Corp") {
			t.Errorf("signed-out page does not say the user is still signed in at Corp:\n%s", body)
		}
	})

	t.Run("local session is not ours", func(t *testing.T) {
		if _, err := g.h.EndSession(httptestRequest(g), session.Session{Provider: "local"}); !errors.Is(err, ErrNotOIDC) {
			t.Errorf("EndSession(local) error = %v, want ErrNotOIDC", err)
		}
	})
}

// TestRealProviderOutage: with the provider gone, sessions keep working and
// a new sign-in gets the "unreachable" page, not a hang.
func TestRealProviderOutage(t *testing.T) {
	t.Run("provider killed", func(t *testing.T) {
		g := newGateway(t)
		o := startRealOP(t, g, 0)
		g.setup(t, realProvider(o.issuer, ""), func(opts *Options) { opts.DiscoveryTTL = time.Minute })
		c := browser(t)
		signInSession(t, c, g, o, StartURL("test", "/app"), "alice", "alice-pw")
		o.kill()
		g.clock.Advance(2 * time.Minute) // the discovery cache has expired

		resp, body := get(t, c, g.URL+"/app")
		sessionOf(t, resp, body)
		resp, body = get(t, browser(t), g.URL+StartURL("test", "/app"))
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot reach it") || !strings.Contains(body, "req-test") {
			t.Errorf("new sign-in: status %d, want 503 naming the outage with the request id; body:\n%s", resp.StatusCode, body)
		}
	})

	t.Run("provider accepts connections but never answers: timeout", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close() // hold it open, say nothing
			}
		}()
		g := newGateway(t)
		g.setup(t, realProvider("http://"+l.Addr().String(), ""), func(o *Options) { o.Timeout = 300 * time.Millisecond })
		resp, body := get(t, browser(t), g.URL+StartURL("test", "/app"))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503; body:\n%s", resp.StatusCode, body)
		}
	})

	t.Run("gateway starts while the provider is down; sign-in works once it is up", func(t *testing.T) {
		g := newGateway(t)
		port := freePort(t)
		g.setup(t, realProvider("http://127.0.0.1:"+strconv.Itoa(port), ""), nil)
		resp, _ := get(t, browser(t), g.URL+StartURL("test", "/app"))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("sign-in with the provider down: status %d, want 503", resp.StatusCode)
		}
		o := startRealOP(t, g, port)
		g.clock.Advance(DefaultRetryAfter + time.Second)
		signInSession(t, browser(t), g, o, StartURL("test", "/app"), "alice", "alice-pw")
	})
}

// signInSession signs in and returns the session /app shows.
func signInSession(t *testing.T, c *http.Client, g *gateway, o *realOP, start, user, password string) session.Session {
	t.Helper()
	resp, body := signIn(t, c, g, o, start, user, password)
	return sessionOf(t, resp, body)
}
