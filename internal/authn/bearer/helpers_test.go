package bearer

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
)

const testAudience = "sekisho-ci"

// env is one issuer's key server, its keys, a clock and an Authenticator
// with routes "api" (Authorization allowed), "app" (Proxy-Authorization
// only) and "other" (no bearer tokens).
type env struct {
	srv   *jwttest.Server
	rsa   jwttest.Key
	ec    jwttest.Key
	clock *jwttest.Clock
	auth  *Authenticator
}

// rsaPriv is made once: RSA generation is slow on a shared machine.
var rsaPriv = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // the test binary cannot run without it
	}
	return k
})

func rsaKey(testing.TB) jwttest.Key {
	return jwttest.Key{Private: rsaPriv(), KID: "rsa-1", Alg: jose.RS256}
}

func newEnv(t testing.TB, mod func(*Issuer, *Options)) *env {
	t.Helper()
	e := &env{rsa: rsaKey(t), ec: jwttest.NewEC(t, "ec-1"), clock: jwttest.NewClock()}
	e.srv = jwttest.NewServer(t, jwttest.Set(e.rsa, e.ec))
	iss := Issuer{Name: "ci", IssuerURL: e.srv.URL, Audiences: []string{testAudience}, JWKSURL: e.srv.JWKSURL()}
	opts := Options{
		Routes:              map[string][]string{"api": {"ci"}, "app": {"ci"}},
		AuthorizationRoutes: map[string]bool{"api": true},
		Now:                 e.clock.Now,
	}
	if mod != nil {
		mod(&iss, &opts)
	}
	opts.Issuers = append([]Issuer{iss}, opts.Issuers...)
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.auth = a
	return e
}

// claims are valid claims for e's issuer at T0.
func (e *env) claims() map[string]any {
	return map[string]any{
		"iss":            e.srv.URL,
		"aud":            testAudience,
		"sub":            "repo:example/app:ref:refs/heads/main",
		"email":          "ci@example.test",
		"email_verified": true,
		"groups":         []string{"deployers"},
		"iat":            jwttest.T0.Unix(),
		"exp":            jwttest.T0.Add(10 * time.Minute).Unix(),
	}
}

func (e *env) with(kv ...any) map[string]any {
	return jwttest.With(e.claims(), kv...)
}

// request is a request on route carrying header: value, with the reqinfo
// the pipeline sets before authentication.
func request(route string, header ...string) (*http.Request, *authntest.Call) {
	r := httptest.NewRequest(http.MethodGet, "http://gw.example.test/x", nil)
	c := &authntest.Call{Request: authn.Request{Route: route}}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return authntest.With(r, c), c
}
