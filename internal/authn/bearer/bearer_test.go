package bearer

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
)

func TestAuthenticateTokens(t *testing.T) {
	e := newEnv(t, nil)
	other := jwttest.NewRSA(t, "rsa-1") // same kid as the issuer's key: a forgery
	attackerEC := jwttest.NewEC(t, "rsa-1")
	good := jwttest.SignWith(t, e.rsa, e.claims())
	parts := strings.Split(good, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(e.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	want := identity.Identity{Kind: identity.Bearer, User: "repo:example/app:ref:refs/heads/main",
		Email: "ci@example.test", Groups: []string{"deployers"}, Provider: "ci"}

	tests := []struct {
		name    string
		token   string
		want    identity.Identity
		wantErr error
	}{
		{name: "valid_rs256", token: good, want: want},
		{name: "valid_es256", token: jwttest.SignWith(t, e.ec, e.claims()), want: want},
		{name: "audience_in_a_list", token: jwttest.SignWith(t, e.rsa, e.with("aud", []string{"x", testAudience})), want: want},
		{name: "email_verified_false_drops_email", token: jwttest.SignWith(t, e.rsa, e.with("email_verified", false)),
			want: identity.Identity{Kind: identity.Bearer, User: want.User, Groups: want.Groups, Provider: "ci"}},
		{name: "email_verified_string_false_drops_email", token: jwttest.SignWith(t, e.rsa, e.with("email_verified", "false")),
			want: identity.Identity{Kind: identity.Bearer, User: want.User, Groups: want.Groups, Provider: "ci"}},
		{name: "forged_signature_other_key_same_kid", token: jwttest.SignWith(t, other, e.claims()), wantErr: jwtcheck.ErrSignature},
		{name: "tampered_payload", token: parts[0] + "." + jwttest.B64(e.with("sub", "admin")) + "." + parts[2], wantErr: jwtcheck.ErrSignature},
		{name: "expired", token: jwttest.SignWith(t, e.rsa, e.with("iat", jwttest.T0.Add(-20*time.Minute).Unix(), "exp", jwttest.T0.Add(-31*time.Second).Unix())), wantErr: jwtcheck.ErrExpired},
		{name: "not_yet_valid_nbf", token: jwttest.SignWith(t, e.rsa, e.with("nbf", jwttest.T0.Add(31*time.Second).Unix())), wantErr: jwtcheck.ErrNotYetValid},
		{name: "issued_in_the_future", token: jwttest.SignWith(t, e.rsa, e.with("iat", jwttest.T0.Add(time.Minute).Unix())), wantErr: jwtcheck.ErrNotYetValid},
		{name: "no_exp", token: jwttest.SignWith(t, e.rsa, e.with("exp", nil)), wantErr: jwtcheck.ErrClaims},
		{name: "wrong_audience", token: jwttest.SignWith(t, e.rsa, e.with("aud", "another-app")), wantErr: jwtcheck.ErrAudience},
		{name: "no_audience", token: jwttest.SignWith(t, e.rsa, e.with("aud", nil)), wantErr: jwtcheck.ErrAudience},
		{name: "wrong_issuer_signed_by_trusted_key", token: jwttest.SignWith(t, e.rsa, e.with("iss", "https://evil.example")), wantErr: jwtcheck.ErrIssuer},
		{name: "alg_none", token: jwttest.B64(map[string]string{"alg": "none", "kid": "rsa-1"}) + "." + parts[1] + ".", wantErr: jwtcheck.ErrAlgorithm},
		{name: "alg_none_with_signature", token: jwttest.B64(map[string]string{"alg": "none", "kid": "rsa-1"}) + "." + parts[1] + "." + parts[2], wantErr: jwtcheck.ErrAlgorithm},
		{name: "hs256_signed_with_the_public_key_pem", token: jwttest.Sign(t, jose.HS256, pubPEM, "rsa-1", e.claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "hs256_signed_with_the_public_key_der", token: jwttest.Sign(t, jose.HS256, pubDER, "rsa-1", e.claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "rs256_issuer_token_signed_es256_refused", token: jwttest.Sign(t, jose.ES256, attackerEC.Private, "rsa-1", e.claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "es256_key_used_as_rs256_refused", token: jwttest.Sign(t, jose.RS256, other.Private, "ec-1", e.claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "unknown_kid", token: jwttest.Sign(t, jose.RS256, other.Private, "nobody", e.claims()), wantErr: jwtcheck.ErrUnknownKey},
		{name: "no_kid", token: jwttest.Sign(t, jose.RS256, e.rsa.Private, "", e.claims()), wantErr: jwtcheck.ErrMalformed},
		{name: "truncated_signature", token: good[:len(good)-12], wantErr: jwtcheck.ErrSignature},
		{name: "empty_signature", token: parts[0] + "." + parts[1] + ".", wantErr: jwtcheck.ErrSignature},
		{name: "garbage_header", token: "eyJ!!!." + parts[1] + "." + parts[2], wantErr: jwtcheck.ErrMalformed},
		{name: "oversized", token: parts[0] + "." + strings.Repeat("A", jwtcheck.MaxTokenSize) + "." + parts[2], wantErr: jwtcheck.ErrMalformed},
		{name: "groups_not_a_list", token: jwttest.SignWith(t, e.rsa, e.with("groups", "admins")), wantErr: jwtcheck.ErrClaims},
		{name: "subject_missing", token: jwttest.SignWith(t, e.rsa, e.with("sub", nil)), wantErr: jwtcheck.ErrClaims},
		{name: "subject_not_a_string", token: jwttest.SignWith(t, e.rsa, e.with("sub", 42)), wantErr: jwtcheck.ErrClaims},
		{name: "subject_with_newline_header_injection", token: jwttest.SignWith(t, e.rsa, e.with("sub", "ci\r\nX-Sekisho-User: admin")), wantErr: jwtcheck.ErrClaims},
		{name: "exp_as_string", token: jwttest.SignWith(t, e.rsa, e.with("exp", "never")), wantErr: jwtcheck.ErrClaims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, info := request("app", "Proxy-Authorization", "Bearer "+tc.token)
			got, err := authntest.Authenticate(e.auth, nil, r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if got.Authenticated() || info.CredentialHeader != "" {
					t.Fatalf("refused token still gave identity %+v, credential header %q", got, info.CredentialHeader)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("identity (-want +got):\n%s", diff)
			}
			if info.CredentialHeader != "Proxy-Authorization" {
				t.Fatalf("CredentialHeader = %q", info.CredentialHeader)
			}
		})
	}
}

func TestAuthenticateHeaders(t *testing.T) {
	e := newEnv(t, nil)
	good := jwttest.SignWith(t, e.rsa, e.claims())
	tests := []struct {
		name       string
		route      string
		headers    []string
		wantUser   string
		wantHeader string
		wantErr    bool
	}{
		{name: "proxy_authorization_on_accepting_route", route: "app", headers: []string{"Proxy-Authorization", "Bearer " + good},
			wantUser: "repo:example/app:ref:refs/heads/main", wantHeader: "Proxy-Authorization"},
		{name: "scheme_is_case_insensitive", route: "app", headers: []string{"Proxy-Authorization", "bearer  " + good},
			wantUser: "repo:example/app:ref:refs/heads/main", wantHeader: "Proxy-Authorization"},
		{name: "authorization_header_on_allowed_route", route: "api", headers: []string{"Authorization", "Bearer " + good},
			wantUser: "repo:example/app:ref:refs/heads/main", wantHeader: "Authorization"},
		{name: "authorization_header_on_route_not_allowing_it_ignored", route: "app", headers: []string{"Authorization", "Bearer " + good}},
		{name: "no_credential_is_anonymous", route: "api"},
		{name: "non_jwt_bearer_is_anonymous", route: "api", headers: []string{"Proxy-Authorization", "Bearer sk_live_abcdef", "Authorization", "Bearer app-own-key"}},
		{name: "basic_scheme_ignored", route: "api", headers: []string{"Authorization", "Basic " + good}},
		{name: "jwt_on_route_accepting_no_issuer_refused", route: "other", headers: []string{"Proxy-Authorization", "Bearer " + good}, wantErr: true},
		{name: "two_proxy_tokens_refused", route: "app", headers: []string{"Proxy-Authorization", "Bearer " + good, "Proxy-Authorization", "Bearer " + good}, wantErr: true},
		{name: "proxy_token_smuggled_beside_other_value_refused", route: "app", headers: []string{"Proxy-Authorization", "Basic Zm9vOmJhcg==", "Proxy-Authorization", "Bearer " + good}, wantErr: true},
		{name: "bad_proxy_token_not_rescued_by_authorization", route: "api", headers: []string{"Proxy-Authorization", "Bearer a.b.c", "Authorization", "Bearer " + good}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, info := request(tc.route, tc.headers...)
			got, err := authntest.Authenticate(e.auth, nil, r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if got.User != tc.wantUser || info.CredentialHeader != tc.wantHeader {
				t.Fatalf("user %q via %q, want %q via %q", got.User, info.CredentialHeader, tc.wantUser, tc.wantHeader)
			}
		})
	}
}

func TestIssuerNotAcceptedOnRoute(t *testing.T) {
	other := jwttest.NewServer(t, jwttest.Set(jwttest.NewEC(t, "k")))
	e := newEnv(t, func(_ *Issuer, o *Options) {
		o.Issuers = []Issuer{{Name: "k8s", IssuerURL: other.URL, Audiences: []string{testAudience}, JWKSURL: other.JWKSURL()}}
		o.Routes["k8s-only"] = []string{"k8s"}
	})
	tok := jwttest.SignWith(t, e.rsa, e.claims())
	if _, err := e.auth.Verify(t.Context(), "app", tok); err != nil {
		t.Fatalf("token refused on its own route: %v", err)
	}
	// Now cached: the cache must not let it onto a route that does not accept its issuer.
	_, err := e.auth.Verify(t.Context(), "k8s-only", tok)
	if !errors.Is(err, jwtcheck.ErrIssuer) || !strings.Contains(err.Error(), "not on route") {
		t.Fatalf("err = %v, want the issuer refused on this route", err)
	}
}

func TestRequiredClaims(t *testing.T) {
	e := newEnv(t, func(i *Issuer, _ *Options) {
		i.RequiredClaims = map[string]string{"repository_owner": "example"}
		i.SubjectClaim = "email"
		i.GroupsClaim = "-"
	})
	tests := []struct {
		name     string
		claims   map[string]any
		wantUser string
	}{
		{name: "matching_claim", claims: e.with("repository_owner", "example"), wantUser: "ci@example.test"},
		{name: "other_owner_refused", claims: e.with("repository_owner", "evil")},
		{name: "missing_claim_refused", claims: e.claims()},
		{name: "claim_as_list_refused", claims: e.with("repository_owner", []string{"example"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.rsa, tc.claims))
			if tc.wantUser == "" {
				if !errors.Is(err, jwtcheck.ErrClaims) {
					t.Fatalf("err = %v, want ErrClaims", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.User != tc.wantUser || id.Groups != nil {
				t.Fatalf("identity %+v, want user %q and no groups", id, tc.wantUser)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no_audience", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example"}}}, want: `issuer "a": audiences is empty`},
		{name: "hs256_allowed", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example", Audiences: []string{"x"}, AllowedAlgs: []string{"HS256"}}}}, want: `allowed_algs: "HS256"`},
		{name: "none_allowed", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example", Audiences: []string{"x"}, AllowedAlgs: []string{"none"}}}}, want: `allowed_algs: "none"`},
		{name: "plain_http_issuer", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "http://a.example", Audiences: []string{"x"}}}}, want: "plain http"},
		{name: "plain_http_jwks", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example", JWKSURL: "http://a.example/k", Audiences: []string{"x"}}}}, want: "jwks_url"},
		{name: "leeway_too_long", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example", Audiences: []string{"x"}, Leeway: time.Hour}}}, want: "leeway 1h0m0s"},
		{name: "duplicate_name", opts: Options{Issuers: []Issuer{{Name: "a", IssuerURL: "https://a.example", Audiences: []string{"x"}}, {Name: "a", IssuerURL: "https://b.example", Audiences: []string{"x"}}}}, want: `"a": defined twice`},
		{name: "route_names_unknown_issuer", opts: Options{Routes: map[string][]string{"dify": {"gh"}}}, want: `route "dify": bearer issuer "gh" is not defined`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
