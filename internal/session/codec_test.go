package session

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/testclock"
)

func TestRoundTrip(t *testing.T) {
	clk := newClock()
	c := testCodec(t, Options{Secure: true, Now: clk.Now})
	s := c.New(alice(), testHost)
	ck := issue(t, c, s)
	got, err := c.Read(requestWith("other=1; " + ck.Name + "=" + ck.Value + "; theme=dark"))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("Read mismatch (-issued +read):\n%s", diff)
	}
	wantID := identity.Identity{
		Kind: identity.Session, User: "alice", Email: "alice@example.com",
		Groups:   []string{"engineering", "llm-users", "dify-admins", "oncall", "staff"},
		Provider: "google", SessionID: s.ID, AuthTime: t0.Add(-time.Minute),
	}
	if diff := cmp.Diff(wantID, got.Identity()); diff != "" {
		t.Errorf("Identity mismatch (-want +got):\n%s", diff)
	}
	if !got.Identity().Authenticated() {
		t.Error("Identity().Authenticated() = false")
	}
}

func TestNewSession(t *testing.T) {
	clk := testclock.New(t0.Add(700 * time.Millisecond))
	c := testCodec(t, Options{Now: clk.Now})
	id := alice()
	id.AuthTime = time.Time{}
	a, b := c.New(id, testHost), c.New(id, testHost)
	if a.ID == b.ID {
		t.Errorf("two sessions got the same ID %q", a.ID)
	}
	if _, err := decodeID(a.ID); err != nil {
		t.Errorf("New ID: %v", err)
	}
	for name, got := range map[string]time.Time{"IssuedAt": a.IssuedAt, "LastSeen": a.LastSeen, "AuthTime": a.AuthTime} {
		if !got.Equal(t0) {
			t.Errorf("%s = %v, want %v (now truncated to seconds)", name, got, t0)
		}
	}
	id.Groups[0] = "changed"
	if a.Groups[0] == "changed" {
		t.Error("New kept a reference to the caller's Groups")
	}
}

func TestCookieAttributes(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantName string
	}{
		{name: "secure_gets_host_prefix", opts: Options{Secure: true}, wantName: "__Host-sekisho"},
		{name: "insecure_has_no_prefix", opts: Options{Secure: false}, wantName: "sekisho"},
		{name: "custom_name", opts: Options{Secure: true, CookieName: "__Host-gw"}, wantName: "__Host-gw"},
		{name: "custom_insecure", opts: Options{CookieName: "gw_session"}, wantName: "gw_session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			tc.opts.Now = clk.Now
			tc.opts.Lifetime = 2 * time.Hour
			c := testCodec(t, tc.opts)
			s := c.New(alice(), testHost)
			clk.Advance(30 * time.Minute)
			rec := httptest.NewRecorder()
			if err := c.Issue(rec, s); err != nil {
				t.Fatalf("Issue: %v", err)
			}
			raw := rec.Header().Values("Set-Cookie")
			if len(raw) != 1 {
				t.Fatalf("Set-Cookie lines = %q, want 1", raw)
			}
			ck := rec.Result().Cookies()[0]
			got := http.Cookie{Name: ck.Name, Path: ck.Path, Domain: ck.Domain, MaxAge: ck.MaxAge,
				Secure: ck.Secure, HttpOnly: ck.HttpOnly, SameSite: ck.SameSite}
			want := http.Cookie{Name: tc.wantName, Path: "/", MaxAge: int((90 * time.Minute).Seconds()),
				Secure: tc.opts.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("cookie attributes (-want +got):\n%s\nraw: %s", diff, raw[0])
			}
			if c.CookieName() != tc.wantName {
				t.Errorf("CookieName() = %q, want %q", c.CookieName(), tc.wantName)
			}
			if l := len(ck.Name) + 1 + len(ck.Value); l > MaxCookieBytes {
				t.Errorf("cookie is %d bytes, over %d", l, MaxCookieBytes)
			}

			rec = httptest.NewRecorder()
			c.Clear(rec)
			cleared := rec.Result().Cookies()[0]
			got = http.Cookie{Name: cleared.Name, Value: cleared.Value, Path: cleared.Path, MaxAge: cleared.MaxAge,
				Secure: cleared.Secure, HttpOnly: cleared.HttpOnly, SameSite: cleared.SameSite}
			want.MaxAge = -1
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Clear cookie (-want +got):\n%s", diff)
			}
			if h := rec.Header().Get("Set-Cookie"); !strings.Contains(h, "Max-Age=0") {
				t.Errorf("Clear Set-Cookie %q lacks Max-Age=0", h)
			}
		})
	}
}

func TestNewCodecErrors(t *testing.T) {
	ring := testRing(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "nil_keyring", opts: Options{}, want: "Keyring is required"},
		{name: "host_prefix_without_secure", opts: Options{Keyring: ring, CookieName: "__Host-x"}, want: "needs Secure"},
		{name: "secure_prefix_without_secure", opts: Options{Keyring: ring, CookieName: "__Secure-x"}, want: "needs Secure"},
		{name: "name_with_semicolon", opts: Options{Keyring: ring, CookieName: "a;b"}, want: "not a valid cookie name"},
		{name: "name_with_space", opts: Options{Keyring: ring, CookieName: "a b"}, want: "not a valid cookie name"},
		{name: "negative_lifetime", opts: Options{Keyring: ring, Lifetime: -time.Second}, want: "lifetime -1s is negative"},
		{name: "negative_idle", opts: Options{Keyring: ring, IdleTimeout: -time.Second}, want: "idle timeout -1s is negative"},
		{name: "negative_skew", opts: Options{Keyring: ring, ClockSkew: -time.Second}, want: "clock skew -1s is negative"},
		{name: "sub_second_idle", opts: Options{Keyring: ring, IdleTimeout: time.Millisecond}, want: "at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCodec(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCodec error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// flip returns value with one byte of the decoded sealed form XORed.
func flip(t *testing.T, value string, at int) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(b)
	}
	b[at] ^= 0x01
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestRead(t *testing.T) {
	const name = "__Host-sekisho"
	type env struct {
		c    *Codec
		clk  *clock
		rev  *Revocations
		good string // a valid value for alice's session
		s    Session
	}
	// sealAt seals a session with the given times relative to t0.
	sealAt := func(t *testing.T, e env, issued, lastSeen time.Duration) string {
		s := e.s
		s.IssuedAt, s.LastSeen = t0.Add(issued), t0.Add(lastSeen)
		v, err := e.c.Seal(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name    string
		cookies func(t *testing.T, e env) []string // Cookie header lines
		want    error
		msg     string // if set, the error must contain it
	}{
		{name: "valid", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + e.good} }},
		{name: "valid_quoted", cookies: func(t *testing.T, e env) []string { return []string{name + `="` + e.good + `"`} }},
		{name: "no_cookie_header", cookies: func(t *testing.T, e env) []string { return nil }, want: ErrNoSession},
		{name: "only_other_cookies", cookies: func(t *testing.T, e env) []string { return []string{"a=b; sekisho=" + e.good} }, want: ErrNoSession},
		{name: "empty_value", cookies: func(t *testing.T, e env) []string { return []string{name + "="} }, want: ErrInvalid},
		{name: "name_without_value", cookies: func(t *testing.T, e env) []string { return []string{name} }, want: ErrInvalid},
		{name: "non_base64", cookies: func(t *testing.T, e env) []string { return []string{name + "=!!not*base64!!"} }, want: ErrInvalid},
		{name: "std_base64_alphabet", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + strings.NewReplacer("-", "+", "_", "/").Replace(e.good) + "+/"}
		}, want: ErrInvalid},
		{name: "truncated_half", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + e.good[:len(e.good)/2]} }, want: ErrInvalid},
		{name: "truncated_last_char", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + e.good[:len(e.good)-1]} }, want: ErrInvalid},
		{name: "truncated_to_key_id", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + e.good[:6]} }, want: ErrInvalid},
		{name: "tampered_ciphertext", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + flip(t, e.good, 40)} }, want: ErrInvalid},
		{name: "tampered_nonce", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + flip(t, e.good, keyIDSize+1)} }, want: ErrInvalid},
		{name: "tampered_tag", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + flip(t, e.good, -1)} }, want: ErrInvalid},
		{name: "tampered_key_id", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + flip(t, e.good, 0)} }, want: ErrInvalid},
		{name: "appended_bytes", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + e.good + "AAAA"} }, want: ErrInvalid},
		{name: "cookie_from_another_cookie_name", cookies: func(t *testing.T, e env) []string {
			other := testCodec(t, Options{Keyring: e.c.keyring, Secure: true, CookieName: "__Host-other", Now: e.clk.Now})
			v, err := other.Seal(e.s)
			if err != nil {
				t.Fatal(err)
			}
			return []string{name + "=" + v}
		}, want: ErrInvalid},
		{name: "wrong_key", cookies: func(t *testing.T, e env) []string {
			other := testCodec(t, Options{Keyring: testRing(t, testKey(9)), Secure: true, Now: e.clk.Now})
			v, err := other.Seal(e.s)
			if err != nil {
				t.Fatal(err)
			}
			return []string{name + "=" + v}
		}, want: ErrInvalid},
		{name: "oversized", cookies: func(t *testing.T, e env) []string { return []string{name + "=" + strings.Repeat("A", 4000)} }, want: ErrInvalid, msg: "over the 1024-byte limit"},
		{name: "oversized_valid_prefix", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + e.good + strings.Repeat("A", MaxCookieBytes)}
		}, want: ErrInvalid, msg: "over the 1024-byte limit"},
		{name: "duplicate_cookie_injection", msg: "possible cookie injection", cookies: func(t *testing.T, e env) []string {
			attacker := e.c.New(identity.Identity{User: "mallory"}, testHost)
			v, err := e.c.Seal(attacker)
			if err != nil {
				t.Fatal(err)
			}
			return []string{name + "=" + v + "; " + name + "=" + e.good}
		}, want: ErrInvalid},
		{name: "duplicate_cookie_same_value", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + e.good + "; " + name + "=" + e.good}
		}, want: ErrInvalid},
		{name: "duplicate_cookie_injection_second_header", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + e.good, name + "=garbage"}
		}, want: ErrInvalid},
		{name: "expired_absolute", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -12*time.Hour, -time.Second)}
		}, want: ErrExpired},
		{name: "absolute_one_second_left", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -12*time.Hour+time.Second, -time.Second)}
		}},
		{name: "idle_expired", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -2*time.Hour, -time.Hour-time.Second)}
		}, want: ErrExpired},
		{name: "idle_exactly_at_limit", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -2*time.Hour, -time.Hour)}
		}},
		{name: "future_issued", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, 2*time.Minute, 2*time.Minute)}
		}, want: ErrInvalid, msg: "issued 2m0s in the future"},
		{name: "future_issued_within_skew", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, 30*time.Second, 30*time.Second)}
		}},
		{name: "future_last_seen_to_dodge_idle", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -time.Hour, 10*time.Hour)}
		}, want: ErrInvalid, msg: "last seen 10h0m0s in the future"},
		{name: "last_seen_before_issued", cookies: func(t *testing.T, e env) []string {
			return []string{name + "=" + sealAt(t, e, -time.Minute, -2*time.Minute)}
		}, want: ErrInvalid},
		{name: "revoked_session_id", cookies: func(t *testing.T, e env) []string {
			e.rev.RevokeSession(e.s.ID, t0.Add(12*time.Hour))
			return []string{name + "=" + e.good}
		}, want: ErrRevoked},
		{name: "revoked_user_before", cookies: func(t *testing.T, e env) []string {
			e.rev.RevokeUserBefore("alice", t0.Add(time.Second))
			return []string{name + "=" + e.good}
		}, want: ErrRevoked},
		{name: "user_revoked_before_session_issued", cookies: func(t *testing.T, e env) []string {
			e.rev.RevokeUserBefore("alice", t0.Add(-time.Second))
			return []string{name + "=" + e.good}
		}},
		{name: "other_session_revoked", cookies: func(t *testing.T, e env) []string {
			e.rev.RevokeSession(NewID(), t0.Add(12*time.Hour))
			e.rev.RevokeUserBefore("bob", t0.Add(time.Hour))
			return []string{name + "=" + e.good}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			rev := NewRevocations()
			c := testCodec(t, Options{Secure: true, Now: clk.Now, Revocations: rev})
			s := c.New(alice(), testHost)
			good, err := c.Seal(s)
			if err != nil {
				t.Fatal(err)
			}
			e := env{c: c, clk: clk, rev: rev, good: good, s: s}
			got, err := c.Read(requestWith(tc.cookies(t, e)...))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Read error = %v, want a session", err)
				}
				if got.ID != s.ID || got.User != "alice" {
					t.Errorf("Read = %+v, want alice's session %s", got, s.ID)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Read error = %q, want it to contain %q", err, tc.msg)
			}
			if diff := cmp.Diff(Session{}, got); diff != "" {
				t.Errorf("Read returned a session with error %v:\n%s", err, diff)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	oldKey, newKey := testKey(1), testKey(2)
	before := testCodec(t, Options{Keyring: testRing(t, oldKey), Secure: true, Now: clk.Now})
	during := testCodec(t, Options{Keyring: testRing(t, newKey, oldKey), Secure: true, Now: clk.Now})
	after := testCodec(t, Options{Keyring: testRing(t, newKey), Secure: true, Now: clk.Now})

	s := before.New(alice(), testHost)
	oldValue, err := before.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	newValue, err := during.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("old_rotated_key_still_opens", func(t *testing.T) {
		if _, err := during.Open(oldValue, testHost); err != nil {
			t.Errorf("Open(old cookie) with [new, old] = %v", err)
		}
	})
	t.Run("new_key_seals", func(t *testing.T) {
		raw, _ := base64.RawURLEncoding.DecodeString(newValue)
		if id := keyID(newKey); string(raw[:keyIDSize]) != string(id[:]) {
			t.Errorf("sealed key id %x, want the new key's %x", raw[:keyIDSize], id)
		}
		if _, err := before.Open(newValue, testHost); !errors.Is(err, ErrInvalid) {
			t.Errorf("old-only ring opened a cookie sealed after rotation: %v", err)
		}
		if _, err := after.Open(newValue, testHost); err != nil {
			t.Errorf("Open(new cookie) with [new] = %v", err)
		}
	})
	t.Run("retired_key_no_longer_opens", func(t *testing.T) {
		if _, err := after.Open(oldValue, testHost); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(old cookie) after retiring the old key = %v, want ErrInvalid", err)
		}
	})
}

func TestNeedsRefreshAndRefresh(t *testing.T) {
	tests := []struct {
		name string
		idle time.Duration
		age  time.Duration
		want bool
	}{
		{name: "fresh", idle: time.Hour, age: 0, want: false},
		{name: "under_tenth", idle: time.Hour, age: 5*time.Minute + 59*time.Second, want: false},
		{name: "at_tenth", idle: time.Hour, age: 6 * time.Minute, want: true},
		{name: "short_idle_floor_one_minute", idle: 5 * time.Minute, age: 59 * time.Second, want: false},
		{name: "short_idle_after_minute", idle: 5 * time.Minute, age: time.Minute, want: true},
		{name: "tiny_idle_half", idle: time.Minute, age: 30 * time.Second, want: true},
		{name: "tiny_idle_before_half", idle: time.Minute, age: 29 * time.Second, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			c := testCodec(t, Options{IdleTimeout: tc.idle, Now: clk.Now})
			s := c.New(alice(), testHost)
			clk.Advance(tc.age)
			if got := c.NeedsRefresh(s); got != tc.want {
				t.Errorf("NeedsRefresh after %s with idle %s = %v, want %v", tc.age, tc.idle, got, tc.want)
			}
		})
	}

	t.Run("sliding_idle_keeps_active_user_signed_in", func(t *testing.T) {
		clk := newClock()
		c := testCodec(t, Options{Now: clk.Now})
		s := c.New(alice(), testHost)
		ck := issue(t, c, s)
		// Active every 40 minutes for 4 hours: past the 1h idle timeout many times over.
		for i := range 6 {
			clk.Advance(40 * time.Minute)
			got, err := c.Read(requestWith(ck.Name + "=" + ck.Value))
			if err != nil {
				t.Fatalf("round %d: Read: %v", i, err)
			}
			if !c.NeedsRefresh(got) {
				t.Fatalf("round %d: NeedsRefresh = false after 40m", i)
			}
			rec := httptest.NewRecorder()
			got, err = c.Refresh(rec, got)
			if err != nil {
				t.Fatalf("round %d: Refresh: %v", i, err)
			}
			if !got.LastSeen.Equal(clk.Now()) || !got.IssuedAt.Equal(t0) {
				t.Fatalf("round %d: Refresh LastSeen %v IssuedAt %v", i, got.LastSeen, got.IssuedAt)
			}
			ck = rec.Result().Cookies()[0]
		}
		clk.Advance(61 * time.Minute)
		if _, err := c.Read(requestWith(ck.Name + "=" + ck.Value)); !errors.Is(err, ErrExpired) {
			t.Errorf("Read after 61 idle minutes = %v, want ErrExpired", err)
		}
	})
}

func TestIssueRefuses(t *testing.T) {
	clk := newClock()
	c := testCodec(t, Options{Secure: true, Now: clk.Now})
	many := alice()
	many.Groups = nil
	for i := range 60 {
		many.Groups = append(many.Groups, strings.Repeat("g", 20)+string(rune('a'+i%26)))
	}
	tests := []struct {
		name    string
		session func() Session
		want    string
	}{
		{name: "too_many_groups", session: func() Session { return c.New(many, testHost) }, want: "over the 1024-byte limit (60 groups"},
		{name: "bad_session_id", session: func() Session { s := c.New(alice(), testHost); s.ID = "short"; return s }, want: "session ID"},
		{name: "non_canonical_session_id", session: func() Session {
			s := c.New(alice(), testHost)
			s.ID = s.ID[:21] + "B" // trailing bits set: "A" and "B" decode alike without Strict
			if s.ID[21] == 'B' {
				s.ID = s.ID[:21] + "C"
			}
			return s
		}, want: "session ID"},
		{name: "already_expired", session: func() Session {
			s := c.New(alice(), testHost)
			s.IssuedAt = t0.Add(-12 * time.Hour)
			return s
		}, want: "session expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := c.Issue(rec, tc.session())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Issue error = %v, want it to contain %q", err, tc.want)
			}
			if h := rec.Header().Values("Set-Cookie"); len(h) != 0 {
				t.Errorf("Issue failed but set %q", h)
			}
		})
	}
}

func TestTypicalCookieSize(t *testing.T) {
	c := testCodec(t, Options{Secure: true})
	s := c.New(alice(), testHost)
	s.Email = "alice.longname@engineering.example-company.com"
	v, err := c.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	if size := len(c.CookieName()) + 1 + len(v); size > MaxCookieBytes/2 {
		t.Errorf("typical session cookie is %d bytes, want well under %d", size, MaxCookieBytes)
	}
}

func BenchmarkRead(b *testing.B) {
	clk := newClock()
	c := testCodec(b, Options{Secure: true, Now: clk.Now, Revocations: NewRevocations()})
	v, err := c.Seal(c.New(alice(), testHost))
	if err != nil {
		b.Fatal(err)
	}
	r := requestWith("_ga=GA1.2.3; " + c.CookieName() + "=" + v + "; theme=dark")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Read(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	clk := newClock()
	c := testCodec(b, Options{Secure: true, Now: clk.Now})
	s := c.New(alice(), testHost)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		if err := c.Issue(rec, s); err != nil {
			b.Fatal(err)
		}
	}
}
