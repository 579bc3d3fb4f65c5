package oidc

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

// FuzzParseCallback: the callback query parser never panics, and what it
// accepts is well-formed and survives a round trip.
func FuzzParseCallback(f *testing.F) {
	st := randomToken()
	for _, s := range []string{"", "code=abc&state=" + st, "state=" + st + "&state=" + st, "error=access_denied&state=" + st,
		"error=a%22b", "code=%zz", "state=" + st[:42], strings.Repeat("a=b&", 3000), "error_description=%E2%82&code=1", "code=!!!!\xf5\xf5", "code=a%00b", "code=" + strings.Repeat("!", 4000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseCallback(raw)
		if err != nil {
			return
		}
		if len(raw) > maxCallbackQuery {
			t.Fatalf("accepted a %d-byte query", len(raw))
		}
		if p.State != "" && !validState(p.State) {
			t.Fatalf("accepted state %q", p.State)
		}
		if p.Error != "" && !errorCode(p.Error) {
			t.Fatalf("accepted error %q", p.Error)
		}
		v := url.Values{}
		for k, s := range map[string]string{"state": p.State, "code": p.Code, "error": p.Error, "error_description": p.ErrorDescription} {
			if s != "" {
				v.Set(k, s)
			}
		}
		if !vschar(p.Code) {
			t.Fatalf("accepted code %q", p.Code)
		}
		if len(v.Encode()) > maxCallbackQuery {
			return // percent-encoding grew it past the limit: nothing to compare
		}
		again, err := parseCallback(v.Encode())
		if err != nil {
			t.Fatalf("re-encoded %q refused: %v", v.Encode(), err)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("round trip differs (-first +again):\n%s", diff)
		}
	})
}

// FuzzFlowCookie: a flow cookie opens only if it is, byte for byte, what
// sekisho sealed; any alteration is refused.
func FuzzFlowCookie(f *testing.F) {
	g := newGatewayNoListen(f)
	fs := flowState{Provider: "corp", State: randomToken(), Nonce: "n", Verifier: "v", Next: "/", RedirectURI: "http://h/cb", Created: 1}
	name, value, err := g.h.sealState(fs)
	if err != nil {
		f.Fatal(err)
	}
	orig, _ := base64.RawURLEncoding.DecodeString(value)
	f.Add(value)
	f.Add(value[:len(value)-1])
	f.Add(value + "A")
	f.Add("")
	f.Add(strings.Repeat("A", 3000))
	f.Fuzz(func(t *testing.T, v string) {
		got, err := g.h.decodeState(name, v)
		if err != nil {
			return
		}
		b, derr := base64.RawURLEncoding.DecodeString(v)
		if derr != nil || !bytes.Equal(b, orig) {
			t.Fatalf("an altered cookie %q opened: %+v", v, got)
		}
		if diff := cmp.Diff(fs, got); diff != "" {
			t.Fatalf("opened to another state (-sealed +opened):\n%s", diff)
		}
	})
}

// FuzzCallback: whatever query and Cookie header an attacker sends, the
// callback never issues a session and never redirects.
func FuzzCallback(f *testing.F) {
	g := newGatewayNoListen(f)
	fs := flowState{Provider: "corp", State: randomToken(), Nonce: "n", Verifier: "v", Next: "/", RedirectURI: "http://gw.test" + CallbackPath, Created: time.Now().Unix()}
	name, value, _ := g.h.sealState(fs)
	f.Add("code=c&state="+fs.State, name+"="+value)
	f.Add("error=access_denied&state="+fs.State, name+"="+value)
	f.Add("code=c&state="+fs.State, name+"="+value+"; "+name+"="+value)
	f.Add("code=c&state="+randomToken(), "sekisho-oidc-AAAAAAAAAAAA=AAAA")
	f.Add("state=", "")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		r := httptest.NewRequest(http.MethodGet, "http://gw.test/", nil)
		r.URL.Path, r.URL.RawQuery = CallbackPath, query
		r.Header.Set("Cookie", cookie)
		r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{ID: "fuzz"}))
		w := httptest.NewRecorder()
		g.h.Serve(w, r)
		if w.Code < 400 {
			t.Fatalf("status %d for query %q cookie %q", w.Code, query, cookie)
		}
		for _, c := range w.Result().Cookies() {
			if c.Name == g.codec.CookieName() {
				t.Fatalf("session cookie issued for query %q", query)
			}
		}
	})
}

// newGatewayNoListen is a Handler whose provider is never reachable (a
// closed loopback port), for fuzzing without network traffic.
func newGatewayNoListen(tb testing.TB) *gateway {
	g := &gateway{tokens: &memTokens{}, clock: &clock{}}
	g.setup(tb, ProviderOptions{Name: "corp", Issuer: "http://127.0.0.1:1", ClientID: "c", ClientSecret: []byte("s")}, nil)
	return g
}
