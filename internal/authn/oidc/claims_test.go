package oidc

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadClaimsGroups(t *testing.T) {
	for _, tc := range []struct {
		name    string
		claims  string
		path    string
		want    []string
		wantErr bool
	}{
		{"array", `{"sub":"s","groups":["a","b","a"]}`, "groups", []string{"a", "b"}, false},
		{"single string", `{"sub":"s","roles":"admin"}`, "roles", []string{"admin"}, false},
		{"nested path", `{"sub":"s","realm_access":{"roles":["x"]}}`, "realm_access.roles", []string{"x"}, false},
		{"full name with dots wins over the path", `{"sub":"s","a.b":["full"],"a":{"b":["nested"]}}`, "a.b", []string{"full"}, false},
		{"non-strings in the array are ignored", `{"sub":"s","groups":["a",1,null,{"x":1},""]}`, "groups", []string{"a"}, false},
		{"missing claim is no groups", `{"sub":"s"}`, "groups", nil, false},
		{"path through a non-object", `{"sub":"s","realm_access":"x"}`, "realm_access.roles", nil, false},
		{"object value is an error", `{"sub":"s","groups":{"a":1}}`, "groups", nil, true},
		{"number value is an error", `{"sub":"s","groups":3}`, "groups", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := readClaims([]byte(tc.claims), tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, c.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityFor(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	p := ProviderOptions{Name: "corp"}
	for _, tc := range []struct {
		name      string
		p         ProviderOptions
		c         claims
		wantUser  string
		wantEmail string
	}{
		{"verified email is the user", p, claims{Subject: "1", Email: "A@Example.com", EmailVerified: true}, "a@example.com", "a@example.com"},
		{"unverified email is ignored (account takeover by email)", p, claims{Subject: "1", Email: "ceo@example.com"}, "corp:1", ""},
		{"sub user cannot collide with a local account name", p, claims{Subject: "admin"}, "corp:admin", ""},
		{"insecure trust of unverified email", ProviderOptions{Name: "corp", InsecureTrustUnverifiedEmail: true},
			claims{Subject: "1", Email: "x@example.com"}, "x@example.com", "x@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := identityFor(tc.p, tc.c, now)
			if id.User != tc.wantUser || id.Email != tc.wantEmail || id.Provider != "corp" || !id.AuthTime.Equal(now) {
				t.Errorf("identity %+v, want user %q email %q provider corp auth time now", id, tc.wantUser, tc.wantEmail)
			}
		})
	}
}

// TestFlowCookieForAnotherState: a flow cookie whose name matches the
// callback's state (same 12-character prefix) but that was sealed for
// another state is refused.
func TestFlowCookieForAnotherState(t *testing.T) {
	g := newGatewayNoListen(t)
	mine := randomToken()
	other := mine[:12] + randomToken()[12:]
	_, value, err := g.h.sealState(flowState{Provider: "corp", State: other, Created: time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "http://gw.test/", nil)
	r.AddCookie(&http.Cookie{Name: g.h.cookieName(mine), Value: value})
	if _, err := g.h.openState(r, mine); !errors.Is(err, errFlowMismatch) {
		t.Errorf("openState = %v, want errFlowMismatch", err)
	}
}

func TestNewRefusesBadProviders(t *testing.T) {
	g := newGatewayNoListen(t)
	base := Options{Sessions: g.codec, Keyring: g.h.keyring, Origin: g.h.origin}
	for _, tc := range []struct {
		name string
		p    ProviderOptions
	}{
		{"plain http issuer off loopback", ProviderOptions{Name: "a", Issuer: "http://idp.example.com", ClientID: "c", ClientSecret: []byte("s")}},
		{"reserved name local", ProviderOptions{Name: "local", Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: []byte("s")}},
		{"name with a slash", ProviderOptions{Name: "a/b", Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: []byte("s")}},
		{"no client secret", ProviderOptions{Name: "a", Issuer: "https://idp.example.com", ClientID: "c"}},
		{"google preset with another issuer", ProviderOptions{Name: "g", Preset: "google", Issuer: "https://evil.example", ClientID: "c", ClientSecret: []byte("s")}},
		{"allowed_domains without google", ProviderOptions{Name: "a", Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: []byte("s"), AllowedDomains: []string{"x.com"}}},
		{"auth_params overriding nonce", ProviderOptions{Name: "a", Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: []byte("s"), AuthParams: map[string]string{"nonce": "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.Providers = []ProviderOptions{tc.p}
			if _, err := New(o); err == nil {
				t.Error("New accepted it")
			}
		})
	}
	t.Run("google preset fills issuer and label", func(t *testing.T) {
		o := base
		o.Providers = []ProviderOptions{{Name: "google", Preset: "google", ClientID: "c", ClientSecret: []byte("s"), AllowedDomains: []string{"Example.com"}}}
		h, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		p := h.providers["google"].opts
		if p.Issuer != GoogleIssuer || p.Label != "Google" || p.AllowedDomains[0] != "example.com" {
			t.Errorf("google preset: issuer %q label %q domains %q", p.Issuer, p.Label, p.AllowedDomains)
		}
		if diff := cmp.Diff([]ProviderInfo{{Name: "google", Label: "Google"}}, h.Providers()); diff != "" {
			t.Errorf("Providers (-want +got):\n%s", diff)
		}
	})
}
