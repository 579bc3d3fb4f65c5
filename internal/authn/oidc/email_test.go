package oidc

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/config"
)

func TestEmailAddress(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain address", "alice@example.com", "alice@example.com"},
		{"upper case is lower-cased whole", "Alice@Example.COM", "alice@example.com"},
		{"plus and dots in the local part", "a.b+tag@mail.example.co.uk", "a.b+tag@mail.example.co.uk"},
		{"punycode domain", "a@xn--bcher-kva.example", "a@xn--bcher-kva.example"},
		{"digits in labels, hyphen inside", "a1@x-1.example9.com", "a1@x-1.example9.com"},
		{"longest local part", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := emailAddress(tc.in)
			if !ok || got != tc.want {
				t.Errorf("emailAddress(%q) = %q, %v; want %q, true", tc.in, got, ok, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"email that is not an address (a local account name)", "alice"},
		{"email that is a provider-qualified name", "corp:admin"},
		{"email with two @", "alice@evil.example@example.com"},
		{"email with two @ in a quoted local part", `"alice@example.com"@evil.example`},
		{"display-name email", "Alice <alice@example.com>"},
		{"angle-bracket email", "<alice@example.com>"},
		{"encoded-word display name", "=?utf-8?q?Alice?= <alice@example.com>"},
		{"comment after the address", "alice@example.com (Alice)"},
		{"quoted local part with a space", `"alice smith"@example.com`},
		{"quoted local part equal to a plain one", `"alice"@example.com`},
		{"two addresses", "alice@example.com, bob@example.com"},
		{"leading space", " alice@example.com"},
		{"trailing space", "alice@example.com "},
		{"trailing newline (header injection)", "alice@example.com\n"},
		{"NUL inside", "alice\x00@example.com"},
		{"tab inside", "alice\t@example.com"},
		{"empty local part", "@example.com"},
		{"empty domain", "alice@"},
		{"domain without a dot", "alice@localhost"},
		{"trailing dot domain", "alice@example.com."},
		{"leading dot domain", "alice@.example.com"},
		{"empty label", "alice@example..com"},
		{"leading dot local part", ".alice@example.com"},
		{"double dot local part", "al..ice@example.com"},
		{"domain literal", "alice@[127.0.0.1]"},
		{"dotted IP domain", "alice@127.0.0.1"},
		{"underscore in the domain", "alice@ex_ample.com"},
		{"label starting with a hyphen", "alice@-example.com"},
		{"label ending with a hyphen", "alice@example-.com"},
		{"label of 64 characters", "alice@" + strings.Repeat("a", 64) + ".com"},
		{"local part of 65 characters", strings.Repeat("a", 65) + "@example.com"},
		{"address over 254 characters", "a@" + strings.Repeat("abcdefghi.", 25) + "com"},
		{"look-alike Cyrillic local part", "\u0430lice@example.com"},
		{"non-ASCII domain", "alice@ex\u00e4mple.com"},
		{"invalid UTF-8", "alice\xff@example.com"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := emailAddress(tc.in); ok {
				t.Errorf("emailAddress(%q) = %q, true; want refused", tc.in, got)
			}
		})
	}
}

// TestNonAddressEmailCannotImpersonate: a provider that lets users choose
// their email claim (or sends a user name in it) must not make anyone a
// local account or a policy's user entry.
func TestNonAddressEmailCannotImpersonate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	pol := authz.Compile(&config.Policy{Users: []string{"alice", "admin@corp"}, Emails: []string{"alice@example.com"}, Domains: []string{"example.com"}})
	for _, tc := range []struct{ name, email string }{
		{"email that is not an address cannot impersonate a local account", "alice"},
		{"email with two @ cannot match an allowed domain", "mallory@evil.example@example.com"},
		{"display-name email cannot pass for the address inside", "Alice <alice@example.com>"},
		{"email without a domain dot cannot match a users entry", "admin@corp"},
		{"quoted email cannot pass for the plain address", `"alice"@example.com`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []ProviderOptions{{Name: "corp"}, {Name: "corp", InsecureTrustUnverifiedEmail: true}} {
				id := identityFor(p, claims{Subject: "u1", Email: tc.email, EmailVerified: true}, now)
				if id.User != "corp:u1" || id.Email != "" {
					t.Errorf("identity %+v, want user corp:u1 without email", id)
				}
				if d := pol.Decide(id); d.Allow {
					t.Errorf("policy admitted %+v: %s", id, d.Reason)
				}
			}
		})
	}
	t.Run("control: the plain address is admitted", func(t *testing.T) {
		id := identityFor(ProviderOptions{Name: "corp"}, claims{Subject: "u1", Email: "Alice@Example.com", EmailVerified: true}, now)
		if id.User != "alice@example.com" || id.Email != "alice@example.com" || !pol.Decide(id).Allow {
			t.Errorf("identity %+v, want alice@example.com admitted", id)
		}
	})
}

// TestCallbackNonAddressEmail signs in through the callback with a fake
// provider whose verified email claim is not a plain address: the session
// is "corp:SUB" without email; hd (google preset) is still enforced.
func TestCallbackNonAddressEmail(t *testing.T) {
	op := newFakeOP(t)
	for _, tc := range []struct {
		name      string
		google    bool
		email     string
		hd        string
		wantUser  string
		wantEmail string
		wantCode  int
	}{
		{name: "email that is not an address cannot impersonate a local account", email: "alice", wantUser: "corp:u1", wantCode: 200},
		{name: "email with two @", email: "alice@x.example@example.com", wantUser: "corp:u1", wantCode: 200},
		{name: "display-name email", email: "Alice <alice@example.com>", wantUser: "corp:u1", wantCode: 200},
		{name: "upper-case address is the lower-case user", email: "Alice@Example.COM", wantUser: "alice@example.com", wantEmail: "alice@example.com", wantCode: 200},
		{name: "google preset: allowed hd with an address", google: true, email: "alice@example.com", hd: "example.com",
			wantUser: "alice@example.com", wantEmail: "alice@example.com", wantCode: 200},
		{name: "google preset: allowed hd with a non-address email is the sub user", google: true, email: "alice", hd: "example.com",
			wantUser: "corp:u1", wantCode: 200},
		{name: "google preset: an address in an allowed domain does not replace hd", google: true, email: "alice@example.com", hd: "evil.example",
			wantCode: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			g.setup(t, ProviderOptions{Name: "corp", Issuer: op.URL, ClientID: "client-1", ClientSecret: []byte("s")}, nil)
			if tc.google {
				g.h.providers["corp"].opts.Preset = PresetGoogle
				g.h.providers["corp"].opts.AllowedDomains = []string{"example.com"}
			}
			c := browser(t)
			q, _ := startFlow(t, c, g, "corp", "/app")
			now := time.Now()
			claims := map[string]any{"iss": op.URL, "aud": "client-1", "sub": "u1", "email": tc.email, "email_verified": true,
				"nonce": q.Get("nonce"), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
			if tc.hd != "" {
				claims["hd"] = tc.hd
			}
			op.respond(op.mint(t, claims))
			resp, body := get(t, c, g.URL+CallbackPath+"?code=c&state="+q.Get("state"))
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d; body:\n%s", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantCode != 200 {
				return
			}
			s := sessionOf(t, resp, body)
			if s.User != tc.wantUser || s.Email != tc.wantEmail {
				t.Errorf("session user %q email %q, want %q %q", s.User, s.Email, tc.wantUser, tc.wantEmail)
			}
		})
	}
}

// FuzzEmailAddress: the email check never panics, and what it accepts is
// one lower-case ASCII address with one @ and a dotted domain, that net/mail
// reads back as itself.
func FuzzEmailAddress(f *testing.F) {
	for _, s := range []string{"alice", "alice@example.com", "A <a@b.c>", `"a@b"@c.d`, "a@b@c.d", "a@[1.2.3.4]", "a@b.c.", "a@1.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := emailAddress(s)
		if !ok {
			return
		}
		if got != strings.ToLower(s) || strings.Count(got, "@") != 1 || !strings.Contains(got[strings.IndexByte(got, '@'):], ".") {
			t.Fatalf("emailAddress(%q) = %q", s, got)
		}
		for _, c := range []byte(got) {
			if c <= ' ' || c >= 0x7f || c == '<' || c == '"' || c == '(' || c == ',' {
				t.Fatalf("emailAddress(%q) = %q holds %q", s, got, c)
			}
		}
		if a, err := mail.ParseAddress(got); err != nil || a.Address != got || a.Name != "" {
			t.Fatalf("emailAddress(%q) = %q, which net/mail reads as %v, %v", s, got, a, err)
		}
	})
}
