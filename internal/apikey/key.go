// Package apikey makes and checks sekisho's API keys: credentials for
// machines (CI jobs, scripts, other services) scoped to routes and,
// optionally, methods and path prefixes.
//
// A key reads
//
//	sekisho_<id>_<secret>
//
// where id is 12 characters of lower-case base32 (a-z, 2-7), the public
// half that finds the record without a scan, and secret is 32 random bytes
// in unpadded base64url (43 characters); 64 characters in all. The
// distinctive prefix lets secret scanners find leaked keys and keeps sekisho
// from ever mistaking an app's own key (OpenAI-style "sk-...", Dify's
// "app-...") for one of its own.
//
// Only SHA-256 of the secret (bound to the id) is stored. A slow password
// hash such as argon2 is not needed: it protects secrets people choose,
// which are few enough to guess; 256 random bits cannot be guessed however
// fast each guess is, and a fast hash keeps the check cheap on every
// request. Hashes are compared with crypto/subtle.
package apikey

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/pathnorm"
	"github.com/sekisho/sekisho/internal/store"
)

// Key format constants.
const (
	// Prefix starts every key.
	Prefix = "sekisho_"
	// IDLen is the length of the id part.
	IDLen = 12
	// SecretLen is the number of random bytes in the secret.
	SecretLen = 32
	// TokenLen is the length of a whole key.
	TokenLen = len(Prefix) + IDLen + 1 + 43
)

const (
	idAlphabet  = "abcdefghijklmnopqrstuvwxyz234567"
	hashContext = "sekisho api key v1\x00"
)

var secretEncoding = base64.RawURLEncoding.Strict()

// ErrMalformed is returned (wrapped) for a string that starts like a key
// but is not one. The error never contains the key's bytes.
var ErrMalformed = errors.New("malformed sekisho API key")

// Token is a parsed key.
type Token struct {
	// ID is the public half.
	ID string
	// Secret is the private half.
	Secret [SecretLen]byte
}

// String returns the key as it is given to clients.
func (t Token) String() string {
	return Prefix + t.ID + "_" + secretEncoding.EncodeToString(t.Secret[:])
}

// Hash returns the hash stored for the token's secret.
func (t Token) Hash() [32]byte {
	var buf [len(hashContext) + IDLen + SecretLen]byte
	n := copy(buf[:], hashContext)
	n += copy(buf[n:], t.ID)
	copy(buf[n:], t.Secret[:])
	return sha256.Sum256(buf[:])
}

// ParseToken parses s strictly: exact length, prefix, separator, id
// alphabet, and the secret's base64url alphabet with zero padding bits (so
// each key has exactly one spelling). It does no look-up. Errors wrap
// ErrMalformed and never echo s.
func ParseToken(s string) (Token, error) {
	if len(s) != TokenLen {
		return Token{}, fmt.Errorf("%w: %d characters, want %d", ErrMalformed, len(s), TokenLen)
	}
	if s[:len(Prefix)] != Prefix {
		return Token{}, fmt.Errorf("%w: does not start with %q", ErrMalformed, Prefix)
	}
	id, sep, sec := s[len(Prefix):len(Prefix)+IDLen], s[len(Prefix)+IDLen], s[len(Prefix)+IDLen+1:]
	if sep != '_' {
		return Token{}, fmt.Errorf("%w: no '_' after the %d-character id", ErrMalformed, IDLen)
	}
	if !validID(id) {
		return Token{}, fmt.Errorf("%w: id has a character outside a-z 2-7", ErrMalformed)
	}
	// The decoder skips CR and LF; check the alphabet first so they are refused.
	for i := 0; i < len(sec); i++ {
		if !isBase64URL(sec[i]) {
			return Token{}, fmt.Errorf("%w: secret has a character outside base64url", ErrMalformed)
		}
	}
	var t Token
	var enc [TokenLen - len(Prefix) - IDLen - 1]byte // a stack copy: no allocation per request
	copy(enc[:], sec)
	n, err := secretEncoding.Decode(t.Secret[:], enc[:])
	if err != nil || n != SecretLen {
		return Token{}, fmt.Errorf("%w: secret is not %d bytes of canonical base64url", ErrMalformed, SecretLen)
	}
	t.ID = id
	return t, nil
}

// validID reports whether id is IDLen characters of the id alphabet.
func validID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Methods a key may be limited to.
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Spec describes a key to create.
type Spec struct {
	// Name is the operator's label, unique: 1-64 characters of [a-z0-9._@-]
	// (lower-cased). Identities read "apikey:" + Name.
	Name string
	// Routes the key is valid on; at least one.
	Routes []string
	// Methods the key may use (any case; stored upper case); empty: any.
	// A key limited to GET does not get HEAD unless HEAD is listed.
	Methods []string
	// PathPrefixes the normalised request path must lie under, on a
	// segment boundary ("/api" covers "/api/x", not "/apix"); each must be
	// in pathnorm's normal form. Empty: any path.
	PathPrefixes []string
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
}

// Generate makes a new key from spec with randomness from random
// (crypto/rand.Reader in production). It returns the key, to show once,
// and the record to store, which holds only the secret's hash.
func Generate(random io.Reader, spec Spec) (string, store.APIKey, error) {
	name, err := store.CanonicalAPIKeyName(spec.Name)
	if err != nil {
		return "", store.APIKey{}, err
	}
	rec := store.APIKey{Name: name, ExpiresAt: spec.ExpiresAt}
	if len(spec.Routes) == 0 {
		return "", store.APIKey{}, fmt.Errorf("api key %q: name at least one route", name)
	}
	for _, r := range spec.Routes {
		if r == "" || strings.TrimSpace(r) != r {
			return "", store.APIKey{}, fmt.Errorf("api key %q: route name %q is not valid", name, r)
		}
		if !slices.Contains(rec.Routes, r) {
			rec.Routes = append(rec.Routes, r)
		}
	}
	for _, m := range spec.Methods {
		m = strings.ToUpper(m)
		if !slices.Contains(knownMethods, m) {
			return "", store.APIKey{}, fmt.Errorf("api key %q: method %q is not one of %s", name, m, strings.Join(knownMethods, ", "))
		}
		if !slices.Contains(rec.Methods, m) {
			rec.Methods = append(rec.Methods, m)
		}
	}
	for _, p := range spec.PathPrefixes {
		clean, _, err := pathnorm.Normalize(p)
		if err != nil {
			return "", store.APIKey{}, fmt.Errorf("api key %q: path prefix %q: %w", name, p, err)
		}
		if clean != p {
			return "", store.APIKey{}, fmt.Errorf("api key %q: path prefix %q is not in normal form; use %q", name, p, clean)
		}
		if !slices.Contains(rec.PathPrefixes, p) {
			rec.PathPrefixes = append(rec.PathPrefixes, p)
		}
	}
	var raw [IDLen + SecretLen]byte
	if _, err := io.ReadFull(random, raw[:]); err != nil {
		return "", store.APIKey{}, fmt.Errorf("api key %q: read random bytes: %w", name, err)
	}
	var t Token
	id := make([]byte, IDLen)
	for i := range id {
		id[i] = idAlphabet[raw[i]&31] // 256 is a multiple of 32: uniform
	}
	t.ID = string(id)
	copy(t.Secret[:], raw[IDLen:])
	h := t.Hash()
	rec.ID, rec.SecretHash = t.ID, h[:]
	return t.String(), rec, nil
}

// ParseLifetime reads a key lifetime: a number of days ("90d") or a Go
// duration ("720h", "30m"). It must be positive. "never" returns 0 and no
// error: the key does not expire.
func ParseLifetime(s string) (time.Duration, error) {
	if s == "never" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fmt.Errorf("lifetime %q: want a whole number of days from 1 to 36500, like 90d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("lifetime %q: want days (90d), a positive duration (720h) or never", s)
	}
	return d, nil
}
