package apikey

import (
	"errors"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/testclock"
)

// FuzzParseKey checks that an accepted key has exactly one spelling (its
// String is the input), the exact length and alphabets, and that a refused
// one yields ErrMalformed without echoing the input.
func FuzzParseKey(f *testing.F) {
	good := fixedKey("abcdefgh2345", 7).String()
	for _, s := range []string{good, "", Prefix, good[:TokenLen-1], good + "=", strings.ToUpper(good),
		good[:TokenLen-1] + "B", good[:30] + "\n" + good[31:], "Bearer " + good} {
		f.Add(s)
	}
	// The errors' own wording, from inputs that fail each check in turn:
	// an input found within it ("sekisho ", "malformed") is not an echo.
	var wording strings.Builder
	for _, probe := range []string{"", strings.Repeat("x", TokenLen), Prefix + strings.Repeat("a", TokenLen-len(Prefix)),
		Prefix + strings.Repeat("A", IDLen) + "_" + good[len(Prefix)+IDLen+1:], good[:TokenLen-1] + "!", good[:TokenLen-1] + "B"} {
		if _, err := ParseToken(probe); err != nil {
			wording.WriteString(err.Error() + "\n")
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		tok, err := ParseToken(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseToken(%q) error %v does not wrap ErrMalformed", in, err)
			}
			if len(in) >= 8 && strings.Contains(err.Error(), in) && !strings.Contains(wording.String(), in) {
				t.Fatalf("ParseToken error %q echoes the input", err)
			}
			if tok != (Token{}) {
				t.Fatalf("ParseToken(%q) returned %+v with an error", in, tok)
			}
			return
		}
		if got := tok.String(); got != in {
			t.Fatalf("ParseToken(%q).String() = %q: a key has two spellings", in, got)
		}
		if !validID(tok.ID) || len(in) != TokenLen || !strings.HasPrefix(in, Prefix) {
			t.Fatalf("ParseToken accepted %q with id %q", in, tok.ID)
		}
	})
}

// FuzzAuthenticateHeader sends arbitrary Proxy-Authorization and
// Authorization values to a verifier holding one key. Only the exact key
// may authenticate; a value that is not a sekisho bearer key must leave the
// request anonymous without error and name no credential header; nothing
// may panic.
func FuzzAuthenticateHeader(f *testing.F) {
	clk := testclock.New(t0)
	st := openStore(f, "", clk)
	key := mustCreate(f, st, Spec{Name: "ci-bot", Routes: []string{"app"}})
	v := newVerifier(f, st, clk, Options{AuthorizationRoutes: []string{"app"}})
	for _, s := range []string{"Bearer " + key, "bearer  " + key, "Bearer " + key + " ", "Basic abc", "Bearer app-123",
		"Bearer " + Prefix, "Bearer " + key[:TokenLen-1] + "A", "BEARER " + key, "Bearer\t" + key} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, val string, inAuthorization bool) {
		h := HeaderProxyAuthorization
		if inAuthorization {
			h = HeaderAuthorization
		}
		r, info := request("GET", "app", "/", h, val)
		id, err := authntest.Authenticate(v, nil, r)
		exact := strings.EqualFold(val[:min(len(val), 7)], "bearer ") && strings.TrimLeft(val[min(len(val), 7):], " ") == key
		if id.Authenticated() != exact {
			t.Fatalf("value %q: authenticated %v, want %v (err %v)", val, id.Authenticated(), exact, err)
		}
		if id.Authenticated() && err != nil {
			t.Fatalf("value %q: identity and error %v", val, err)
		}
		ours := strings.EqualFold(val[:min(len(val), 7)], "bearer ") && strings.HasPrefix(strings.TrimLeft(val[min(len(val), 7):], " "), Prefix)
		if !ours && (err != nil || info.CredentialHeader != "") {
			t.Fatalf("value %q is not a sekisho key but got error %v, credential header %q", val, err, info.CredentialHeader)
		}
		if ours && info.CredentialHeader != h {
			t.Fatalf("value %q: CredentialHeader %q, want %q so it is stripped", val, info.CredentialHeader, h)
		}
	})
}
