package apikey

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixedKey is a valid key with a known id and secret.
func fixedKey(id string, fill byte) Token {
	t := Token{ID: id}
	for i := range t.Secret {
		t.Secret[i] = fill + byte(i)
	}
	return t
}

func TestParseToken(t *testing.T) {
	good := fixedKey("abcdefgh2345", 7)
	s := good.String()
	if len(s) != TokenLen {
		t.Fatalf("String() is %d characters, want %d", len(s), TokenLen)
	}
	sec := s[len(Prefix)+IDLen+1:]
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string
	}{
		{"valid", s, ""},
		{"empty", "", "0 characters"},
		{"truncated", s[:TokenLen-1], "63 characters"},
		{"extra byte", s + "A", "65 characters"},
		{"other prefix", "sekisha_" + s[len(Prefix):], "does not start"},
		{"upper-case prefix", strings.ToUpper(Prefix) + s[len(Prefix):], "does not start"},
		{"separator not underscore", s[:len(Prefix)+IDLen] + "-" + sec, "no '_'"},
		{"upper-case id", Prefix + "ABCDEFGH2345_" + sec, "id has a character"},
		{"id with digit 8", Prefix + "abcdefgh2348_" + sec, "id has a character"},
		{"newline in secret (the decoder would skip it)", s[:TokenLen-2] + "\n" + s[TokenLen-1:], "outside base64url"},
		{"standard base64 plus", s[:TokenLen-1] + "+", "outside base64url"},
		{"padding character", s[:TokenLen-1] + "=", "outside base64url"},
		{"non-zero padding bits (second spelling of the same secret)", s[:TokenLen-1] + nextB64(s[TokenLen-1]), "canonical"},
		{"NUL", s[:TokenLen-1] + "\x00", "outside base64url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.in)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseToken = %v, %v; want ErrMalformed containing %q", got, err, tc.wantErr)
				}
				if len(tc.in) > 20 && strings.Contains(err.Error(), tc.in[len(Prefix)+IDLen+1:]) {
					t.Fatalf("error %q echoes the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(good, got); diff != "" {
				t.Errorf("ParseToken (-want +got):\n%s", diff)
			}
		})
	}
}

// nextB64 returns the base64url character after c, which differs from c
// only in the low bits.
func nextB64(c byte) string {
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(a, c)
	return string(a[(i+1)%64])
}

func TestGenerate(t *testing.T) {
	exp := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	key, rec, err := Generate(rand.Reader, Spec{Name: "CI-Bot", Routes: []string{"flowise-api", "dify-api", "flowise-api"},
		Methods: []string{"post", "GET", "POST"}, PathPrefixes: []string{"/api/v1"}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(key)
	if err != nil {
		t.Fatalf("generated key does not parse: %v", err)
	}
	h := tok.Hash()
	if tok.ID != rec.ID || !bytes.Equal(h[:], rec.SecretHash) {
		t.Fatalf("record id %q hash %x do not match the key (id %q hash %x)", rec.ID, rec.SecretHash, tok.ID, h)
	}
	if bytes.Contains([]byte(rec.Name+strings.Join(rec.Routes, "")), tok.Secret[:]) || bytes.Equal(rec.SecretHash, tok.Secret[:]) {
		t.Fatal("the record holds the secret itself")
	}
	want := []any{"ci-bot", []string{"flowise-api", "dify-api"}, []string{"POST", "GET"}, []string{"/api/v1"}, exp}
	got := []any{rec.Name, rec.Routes, rec.Methods, rec.PathPrefixes, rec.ExpiresAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	key2, _, err := Generate(rand.Reader, Spec{Name: "x", Routes: []string{"r"}})
	if err != nil || key2 == key || key2[:len(Prefix)+IDLen] == key[:len(Prefix)+IDLen] {
		t.Fatalf("two keys share an id or key: %v", err)
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"no routes", Spec{Name: "a"}, "at least one route"},
		{"bad name", Spec{Name: "a b", Routes: []string{"r"}}, `"a b"`},
		{"unknown method", Spec{Name: "a", Routes: []string{"r"}, Methods: []string{"FETCH"}}, `method "FETCH"`},
		{"path not normal", Spec{Name: "a", Routes: []string{"r"}, PathPrefixes: []string{"/api/../admin"}}, `use "/admin"`},
		{"path relative", Spec{Name: "a", Routes: []string{"r"}, PathPrefixes: []string{"api"}}, "does not start"},
		{"path with encoded slash", Spec{Name: "a", Routes: []string{"r"}, PathPrefixes: []string{"/a%2Fb"}}, "encoded slash"},
		{"blank route", Spec{Name: "a", Routes: []string{" r"}}, `route name " r"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Generate(rand.Reader, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Generate = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	if _, _, err := Generate(bytes.NewReader(make([]byte, 10)), Spec{Name: "a", Routes: []string{"r"}}); err == nil {
		t.Fatal("Generate with a short random source succeeded")
	}
}

func TestParseLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90d", 90 * 24 * time.Hour, false},
		{"1d", 24 * time.Hour, false},
		{"720h", 720 * time.Hour, false},
		{"never", 0, false},
		{"0d", 0, true},
		{"-5d", 0, true},
		{"0s", 0, true},
		{"-1h", 0, true},
		{"1.5d", 0, true},
		{"99999999999d", 0, true},
		{"", 0, true},
		{"d", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLifetime(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("ParseLifetime(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}
