package session

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// requestTo returns a request for host carrying the cookie ck.
func requestTo(host string, ck *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	r.Host = host
	r.Header.Add("Cookie", ck.Name+"="+ck.Value)
	return r
}

func TestCookieIssuedOnHostAReplayedOnHostBIsRefused(t *testing.T) {
	c := testCodec(t, Options{Secure: true, Now: newClock().Now})
	s := c.New(alice(), "wiki.example.com")
	if s.Host != "wiki.example.com" {
		t.Fatalf("Session.Host = %q, want the issuing host", s.Host)
	}
	ck := issue(t, c, s)
	if ck.Domain != "" || ck.Name != SecureCookieName {
		t.Fatalf("host-bound cookie %s has Domain %q; want %s without Domain", ck.Name, ck.Domain, SecureCookieName)
	}
	if _, err := c.Read(requestTo("wiki.example.com", ck)); err != nil {
		t.Fatalf("Read on the issuing host: %v", err)
	}
	for _, host := range []string{"admin.example.com", "example.com", "sub.wiki.example.com", "wiki.example.org", "127.0.0.1", ""} {
		t.Run(host, func(t *testing.T) {
			got, err := c.Read(requestTo(host, ck))
			if !errors.Is(err, ErrWrongHost) {
				t.Fatalf("cookie of wiki.example.com replayed on %q: err = %v, want ErrWrongHost", host, err)
			}
			if !strings.Contains(err.Error(), `"wiki.example.com"`) {
				t.Errorf("error %q does not name the host the session is bound to", err)
			}
			if diff := cmp.Diff(Session{}, got); diff != "" {
				t.Errorf("Read returned a session with its error:\n%s", diff)
			}
		})
	}
}

func TestOpenedCacheWrongHostStaysRefused(t *testing.T) {
	c := testCodec(t, Options{Now: newClock().Now})
	ck := issue(t, c, c.New(alice(), "a.example.com"))
	if _, err := c.Read(requestTo("a.example.com", ck)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.opened.get(ck.Value, c.keyring.ring.Load()); !ok {
		t.Fatal("value not cached: the test would not exercise the cache")
	}
	if _, err := c.Read(requestTo("b.example.com", ck)); !errors.Is(err, ErrWrongHost) {
		t.Fatalf("cached cookie replayed on another host: err = %v, want ErrWrongHost", err)
	}
}

func TestHostBindingCanonicalForm(t *testing.T) {
	tests := []struct {
		name, issuedOn, readOn string
	}{
		{name: "port_ignored", issuedOn: "app.example.com:8443", readOn: "app.example.com"},
		{name: "port_ignored_other_port", issuedOn: "app.example.com:8443", readOn: "app.example.com:443"},
		{name: "upper_case_issuing_host", issuedOn: "APP.Example.COM", readOn: "app.example.com"},
		{name: "upper_case_reading_host", issuedOn: "app.example.com", readOn: "App.EXAMPLE.com:8443"},
		{name: "trailing_dot", issuedOn: "app.example.com.", readOn: "app.example.com"},
		{name: "ipv6_brackets_and_port", issuedOn: "[::1]:8080", readOn: "[::1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testCodec(t, Options{Now: newClock().Now})
			s := c.New(alice(), tc.issuedOn)
			if want := CanonicalHost(tc.readOn); s.Host != want {
				t.Errorf("Session.Host = %q, want %q", s.Host, want)
			}
			if _, err := c.Read(requestTo(tc.readOn, issue(t, c, s))); err != nil {
				t.Errorf("issued on %q, read on %q: %v", tc.issuedOn, tc.readOn, err)
			}
		})
	}
}

func TestSignInDomainSharesTheSessionBetweenTwoHosts(t *testing.T) {
	c := testCodec(t, Options{Secure: true, SignInDomain: "Example.com", Now: newClock().Now})
	if c.CookieName() != DomainCookieName || c.SignInDomain() != "example.com" {
		t.Fatalf("CookieName %q SignInDomain %q, want %q and example.com", c.CookieName(), c.SignInDomain(), DomainCookieName)
	}
	s := c.New(alice(), "Dify.example.com:443")
	if s.Host != ".example.com" {
		t.Fatalf("Session.Host = %q, want .example.com", s.Host)
	}
	rec := httptest.NewRecorder()
	if err := c.Issue(rec, s); err != nil {
		t.Fatal(err)
	}
	ck := rec.Result().Cookies()[0]
	if raw := rec.Header().Get("Set-Cookie"); !strings.Contains(raw, "Domain=example.com") || !strings.HasPrefix(raw, "__Secure-sekisho=") || !strings.Contains(raw, "Secure") {
		t.Fatalf("Set-Cookie %q: want __Secure-sekisho with Domain=example.com and Secure", raw)
	}
	// A browser sends the cookie set on one host to the other.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	dify, _ := url.Parse("https://dify.example.com/")
	flowise, _ := url.Parse("https://flowise.example.com/")
	jar.SetCookies(dify, rec.Result().Cookies())
	if got := jar.Cookies(flowise); len(got) != 1 || got[0].Value != ck.Value {
		t.Fatalf("browser sends %v to flowise.example.com, want the session cookie", got)
	}
	for _, host := range []string{"dify.example.com", "flowise.example.com", "example.com", "a.b.example.com:8443", "FLOWISE.EXAMPLE.COM."} {
		got, err := c.Read(requestTo(host, ck))
		if err != nil || got.ID != s.ID {
			t.Errorf("Read on %q: session %q, err %v; want the shared session", host, got.ID, err)
		}
	}
}

func TestCookieReplayedOnLookAlikeHostOutsideSignInDomainIsRefused(t *testing.T) {
	c := testCodec(t, Options{Secure: true, SignInDomain: "example.com", Now: newClock().Now})
	ck := issue(t, c, c.New(alice(), "app.example.com"))
	for _, host := range []string{"evilexample.com", "example.com.evil.net", "example.com.evil.net:443", "xample.com", "example.co", "com", "example.org", "127.0.0.1", ""} {
		t.Run(host, func(t *testing.T) {
			if _, err := c.Read(requestTo(host, ck)); !errors.Is(err, ErrWrongHost) {
				t.Errorf("domain session replayed on %q: err = %v, want ErrWrongHost", host, err)
			}
		})
	}
}

func TestSignInDomainHostOutsideTheDomainIsBoundToItself(t *testing.T) {
	c := testCodec(t, Options{Secure: true, SignInDomain: "example.com", Now: newClock().Now})
	s := c.New(alice(), "tools.other.net")
	if s.Host != "tools.other.net" {
		t.Fatalf("Session.Host = %q, want tools.other.net (outside the sign-in domain)", s.Host)
	}
	ck := issue(t, c, s)
	if ck.Domain != "" {
		t.Errorf("cookie for a host outside the sign-in domain has Domain %q", ck.Domain)
	}
	if _, err := c.Read(requestTo("tools.other.net", ck)); err != nil {
		t.Errorf("Read on the issuing host: %v", err)
	}
	for _, host := range []string{"app.example.com", "example.com", "other.net"} {
		if _, err := c.Read(requestTo(host, ck)); !errors.Is(err, ErrWrongHost) {
			t.Errorf("session of tools.other.net replayed on %q: err = %v, want ErrWrongHost", host, err)
		}
	}
}

// Without Secure the cookie is named "sekisho" with and without a sign-in
// domain, and the AD (cookie name) is the same, so only the sealed host
// field keeps a session of one configuration from passing in the other.
func TestSessionOfAnotherSignInConfigurationIsRefused(t *testing.T) {
	ring := testRing(t)
	clk := newClock()
	hostOnly := testCodec(t, Options{Keyring: ring, Now: clk.Now})
	domain := testCodec(t, Options{Keyring: ring, SignInDomain: "example.com", Now: clk.Now})
	other := testCodec(t, Options{Keyring: ring, SignInDomain: "example.org", Now: clk.Now})
	shared := issue(t, domain, domain.New(alice(), "app.example.com"))
	t.Run("domain_session_on_a_gateway_without_sign_in_domain", func(t *testing.T) {
		if _, err := hostOnly.Read(requestTo("app.example.com", shared)); !errors.Is(err, ErrWrongHost) {
			t.Errorf("err = %v, want ErrWrongHost", err)
		}
	})
	t.Run("domain_session_on_a_gateway_with_another_sign_in_domain", func(t *testing.T) {
		if _, err := other.Read(requestTo("app.example.com", shared)); !errors.Is(err, ErrWrongHost) {
			t.Errorf("err = %v, want ErrWrongHost", err)
		}
		rec := httptest.NewRecorder()
		s, err := domain.Open(shared.Value, "app.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Issue(rec, s); err == nil || len(rec.Header().Values("Set-Cookie")) != 0 {
			t.Errorf("Issue of a session of another sign-in domain: err = %v, Set-Cookie %q", err, rec.Header().Values("Set-Cookie"))
		}
	})
	t.Run("host_session_stays_on_its_host_under_a_sign_in_domain", func(t *testing.T) {
		ck := issue(t, hostOnly, hostOnly.New(alice(), "app.example.com"))
		if _, err := domain.Read(requestTo("wiki.example.com", ck)); !errors.Is(err, ErrWrongHost) {
			t.Errorf("err = %v, want ErrWrongHost", err)
		}
	})
}

func TestCookieWithTheHostFieldTamperedFailsToOpen(t *testing.T) {
	c := testCodec(t, Options{Now: newClock().Now})
	s := c.New(alice(), "b.example.com")
	value, err := c.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := s.encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(pt, []byte("b.example.com"))
	if at < 0 {
		t.Fatal("host not found in the encoding")
	}
	// GCM is a stream cipher: XORing the ciphertext byte of the host's first
	// letter with 'a'^'b' would make the plaintext say "a.example.com".
	sealed, _ := base64.RawURLEncoding.DecodeString(value)
	sealed[keyIDSize+12+at] ^= 'a' ^ 'b'
	tampered := base64.RawURLEncoding.EncodeToString(sealed)
	got, err := c.Read(requestTo("a.example.com", &http.Cookie{Name: c.CookieName(), Value: tampered}))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("host-tampered cookie on a.example.com: err = %v, want ErrInvalid (AEAD)", err)
	}
	if got.ID != "" {
		t.Errorf("Read returned session %q with its error", got.ID)
	}
}

// encodeV1 is the encoding before sessions carried a host.
func encodeV1(t *testing.T, s Session) []byte {
	t.Helper()
	id, err := decodeID(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	dst := append([]byte{1}, id[:]...)
	dst = binary.AppendVarint(dst, s.AuthTime.Unix())
	dst = binary.AppendVarint(dst, s.IssuedAt.Unix())
	dst = binary.AppendVarint(dst, s.LastSeen.Unix())
	dst = appendString(dst, s.User)
	dst = appendString(dst, s.Email)
	dst = appendString(dst, s.Provider)
	dst = binary.AppendUvarint(dst, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		dst = appendString(dst, g)
	}
	return dst
}

func TestCookieOfTheOldEncodingVersionIsRefused(t *testing.T) {
	c := testCodec(t, Options{Secure: true, Now: newClock().Now})
	s := c.New(alice(), testHost)
	old := base64.RawURLEncoding.EncodeToString(c.keyring.Seal(encodeV1(t, s), c.ad))
	_, err := c.Read(requestWith(c.CookieName() + "=" + old))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("version-1 cookie, authentic under the current key: err = %v, want ErrInvalid naming version 1", err)
	}
}

func TestSignInDomainClearDeletesWithTheSameAttributes(t *testing.T) {
	c := testCodec(t, Options{Secure: true, SignInDomain: "example.com", Now: newClock().Now})
	rec := httptest.NewRecorder()
	c.Clear(rec)
	var domains []string
	for _, ck := range rec.Result().Cookies() {
		if ck.Name != DomainCookieName || ck.MaxAge != -1 || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode {
			t.Errorf("Clear cookie %+v: want %s, Max-Age=0, Secure, HttpOnly, Path=/, SameSite=Lax", ck, DomainCookieName)
		}
		domains = append(domains, ck.Domain)
	}
	if diff := cmp.Diff([]string{"example.com", ""}, domains); diff != "" {
		t.Errorf("Clear domains (-want +got):\n%s", diff)
	}
	// The browser really deletes the domain cookie it was given.
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse("https://app.example.com/")
	issued := httptest.NewRecorder()
	if err := c.Issue(issued, c.New(alice(), u.Host)); err != nil {
		t.Fatal(err)
	}
	jar.SetCookies(u, issued.Result().Cookies())
	if len(jar.Cookies(u)) != 1 {
		t.Fatal("jar did not take the session cookie")
	}
	jar.SetCookies(u, rec.Result().Cookies())
	if got := jar.Cookies(u); len(got) != 0 {
		t.Errorf("after Clear the browser still holds %v", got)
	}
}

func TestCookieNames(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want []string
	}{
		{opts: Options{Secure: true}, want: []string{"__Host-sekisho", "__Host-sekisho", "__Secure-sekisho", "sekisho"}},
		{opts: Options{Secure: true, SignInDomain: "example.com"}, want: []string{"__Secure-sekisho", "__Host-sekisho", "__Secure-sekisho", "sekisho"}},
		{opts: Options{}, want: []string{"sekisho", "__Host-sekisho", "__Secure-sekisho", "sekisho"}},
		{opts: Options{CookieName: "gw"}, want: []string{"gw", "__Host-gw", "__Secure-gw", "gw"}},
	} {
		c := testCodec(t, tc.opts)
		if diff := cmp.Diff(tc.want, c.CookieNames()); diff != "" {
			t.Errorf("CookieNames for %+v (-want +got):\n%s", tc.opts, diff)
		}
	}
}

func TestSignInDomainOptionErrors(t *testing.T) {
	ring := testRing(t)
	for _, tc := range []struct {
		name, domain, cookie, want string
		secure                     bool
	}{
		{name: "single_label", domain: "com", want: "fewer than two labels"},
		{name: "leading_dot", domain: ".example.com", want: "empty label"},
		{name: "trailing_dot", domain: "example.com.", want: "empty label"},
		{name: "wildcard", domain: "*.example.com", want: `contains '*'`},
		{name: "port", domain: "example.com:443", want: `contains ':'`},
		{name: "hyphen_edge", domain: "-example.com", want: "hyphen"},
		{name: "host_prefix_with_domain", domain: "example.com", cookie: "__Host-gw", secure: true, want: "cannot be used with sign-in domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCodec(Options{Keyring: ring, SignInDomain: tc.domain, CookieName: tc.cookie, Secure: tc.secure})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.domain) {
				t.Errorf("NewCodec(sign-in domain %q) error = %v, want it to name the domain and contain %q", tc.domain, err, tc.want)
			}
		})
	}
}

func TestUnderDomain(t *testing.T) {
	for h, want := range map[string]bool{
		"example.com": true, "a.example.com": true, "a.b.example.com": true,
		"evilexample.com": false, "example.com.evil.net": false, "xample.com": false, "com": false, "": false,
	} {
		if got := underDomain(h, "example.com"); got != want {
			t.Errorf("underDomain(%q, example.com) = %v, want %v", h, got, want)
		}
	}
}
