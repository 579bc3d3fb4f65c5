package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, and it
// may return claims only for a token whose ES256 signature over its own
// header and payload checks out under the key (checked here with
// crypto/ecdsa, apart from go-jose) and whose claims are those of a token
// this test signed.
func FuzzVerify(f *testing.F) {
	k := newKey(f, "k1")
	clk := newClock()
	v, err := NewWithKeys(keySet(k), Options{Issuer: testIssuer, Audience: testAudience, Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	good := signES(f, k, goodClaims())
	parts := strings.Split(good, ".")
	signed := map[string]*Claims{}
	record := func(tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err != nil {
			f.Fatalf("seed does not verify: %v", err)
		}
		signed[c.Subject] = c
	}
	record(good)
	bob := goodClaims()
	bob["sub"], bob["groups"] = "bob", []string{}
	bobTok := signES(f, k, bob)
	record(bobTok)

	f.Add(good)
	f.Add(bobTok)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(b64(map[string]string{"alg": "none", "kid": "k1"}) + "." + parts[1] + ".")
	f.Add(sign(f, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "k1", goodClaims()))
	f.Add(good[:len(good)/2])
	f.Add("..")
	f.Add("")
	f.Add(`{"payload":"e30","signatures":[]}`)

	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err != nil {
			if c != nil {
				t.Fatalf("claims returned with error %v", err)
			}
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted a token with %d segments: %q", len(segs), token)
		}
		sig, err := base64.RawURLEncoding.DecodeString(segs[2])
		if err != nil || len(sig) != 64 {
			t.Fatalf("accepted a token whose signature segment is not 64 bytes of base64url: %q", token)
		}
		sum := sha256.Sum256([]byte(segs[0] + "." + segs[1]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(&k.priv.PublicKey, sum[:], r, s) {
			t.Fatalf("accepted a token not signed by the key: %q", token)
		}
		want, ok := signed[c.Subject]
		if !ok {
			t.Fatalf("accepted claims for subject %q that no signed token carried", c.Subject)
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Fatalf("accepted claims differ from the signed ones (-want +got):\n%s", diff)
		}
	})
}
