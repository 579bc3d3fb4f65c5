package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/pkg/verify"
)

// An app verifies the assertion the gateway sent. Here a test server stands
// in for the gateway's /.sekisho/jwks.json and go-jose signs the token the
// way the gateway does.
func Example() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &key.PublicKey, KeyID: "gw-1", Algorithm: "ES256", Use: "sig"},
	}}
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jwks)
	}))
	defer gateway.Close()

	signer, _ := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "gw-1"}}, nil)
	now := time.Now()
	token, _ := jwt.Signed(signer).Claims(map[string]any{
		"iss":    "https://apps.example.com",
		"aud":    "dify",
		"sub":    "alice",
		"email":  "alice@example.com",
		"groups": []string{"eng"},
		"iat":    now.Unix(),
		"exp":    now.Add(5 * time.Minute).Unix(),
	}).Serialize()

	v, err := verify.New(verify.Options{
		JWKSURL:  gateway.URL + "/.sekisho/jwks.json",
		Issuer:   "https://apps.example.com",
		Audience: "dify",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	claims, err := v.Verify(context.Background(), token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(claims.Subject, claims.Email, claims.Groups)
	// Output: alice alice@example.com [eng]
}
