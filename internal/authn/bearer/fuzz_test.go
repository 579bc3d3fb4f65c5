package bearer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
)

// FuzzParse feeds arbitrary tokens to the whole check (parse, key lookup,
// signature, claims). It must never panic, and it may accept a token only
// if its signature checks out under one of the issuer's keys — checked here
// with crypto/rsa and crypto/ecdsa, apart from go-jose — and the identity is
// one a token this test signed carried.
func FuzzParse(f *testing.F) {
	e := newEnv(f, nil)
	signed := map[string]identity.Identity{}
	add := func(k jwttest.Key, claims map[string]any) string {
		tok := jwttest.SignWith(f, k, claims)
		id, err := e.auth.Verify(f.Context(), "app", tok)
		if err != nil {
			f.Fatalf("seed refused: %v", err)
		}
		signed[id.User] = id
		f.Add(tok)
		return tok
	}
	good := add(e.rsa, e.claims())
	add(e.ec, e.with("sub", "bob", "groups", []string{}))
	parts := strings.Split(good, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(jwttest.B64(map[string]string{"alg": "none", "kid": "rsa-1"}) + "." + parts[1] + ".")
	f.Add(jwttest.Sign(f, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "rsa-1", e.claims()))
	f.Add(good[:len(good)/2])
	f.Add("..")
	f.Add("")
	f.Add(`{"payload":"e30","signatures":[]}`)

	f.Fuzz(func(t *testing.T, token string) {
		id, err := e.auth.Verify(t.Context(), "app", token)
		if err != nil {
			if id.Authenticated() {
				t.Fatalf("identity returned with error %v", err)
			}
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted a token with %d segments", len(segs))
		}
		sig, err := base64.RawURLEncoding.DecodeString(segs[2])
		if err != nil {
			t.Fatalf("accepted a token whose signature is not base64url: %q", token)
		}
		sum := sha256.Sum256([]byte(segs[0] + "." + segs[1]))
		rsaOK := rsa.VerifyPKCS1v15(e.rsa.Public().(*rsa.PublicKey), crypto.SHA256, sum[:], sig) == nil ||
			rsa.VerifyPSS(e.rsa.Public().(*rsa.PublicKey), crypto.SHA256, sum[:], sig, nil) == nil
		ecOK := len(sig) == 64 && ecdsa.Verify(e.ec.Public().(*ecdsa.PublicKey), sum[:],
			new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		if !rsaOK && !ecOK {
			t.Fatalf("accepted a token no issuer key signed: %q", token)
		}
		want, ok := signed[id.User]
		if !ok {
			t.Fatalf("accepted an identity %q that no signed token carried", id.User)
		}
		if diff := cmp.Diff(want, id); diff != "" {
			t.Fatalf("accepted identity differs from the signed one (-want +got):\n%s", diff)
		}
	})
}
