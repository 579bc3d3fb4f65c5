package local

import (
	"crypto/rand"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Password policy, NIST SP 800-63B style: a length floor and no composition
// rules (no "one digit, one symbol"), which only push users to predictable
// patterns.
const (
	// MinPasswordChars is the shortest password CheckPassword accepts, in
	// characters (Unicode code points).
	MinPasswordChars = 12
	// MaxPasswordBytes is the longest password accepted anywhere, in bytes.
	// The cap is there because hashing is proportional to input: without it
	// a login form posting megabytes would be a cheap denial of service.
	MaxPasswordBytes = 256
)

// CheckPassword reports whether pw may be set as a password (by "sekisho
// user add" and "user passwd"): valid UTF-8, at least MinPasswordChars
// characters and at most MaxPasswordBytes bytes. The error says which rule
// failed and never contains the password.
func CheckPassword(pw string) error {
	if !utf8.ValidString(pw) {
		return errors.New("password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(pw); n < MinPasswordChars {
		return fmt.Errorf("password has %d characters; use at least %d (a few random words work well)", n, MinPasswordChars)
	}
	if len(pw) > MaxPasswordBytes {
		return fmt.Errorf("password is %d bytes; the limit is %d", len(pw), MaxPasswordBytes)
	}
	return nil
}

// passwordAlphabet has no look-alikes (0/O/o, 1/l/I, 5/S, 2/Z, 8/B), so a
// one-time password read off a terminal is typed right the first time.
const passwordAlphabet = "34679abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY"

// GeneratedPasswordLen is the length of GeneratePassword's result: 20
// characters from a 50-character alphabet, about 112 bits.
const GeneratedPasswordLen = 20

// GeneratePassword returns a random password of GeneratedPasswordLen
// characters from an unambiguous alphabet, for the first admin's one-time
// password. It passes CheckPassword.
func GeneratePassword() (string, error) {
	out := make([]byte, 0, GeneratedPasswordLen)
	buf := make([]byte, 64)
	// Rejection sampling keeps every character equally likely: bytes at or
	// above the largest multiple of the alphabet size are discarded.
	limit := byte(256 - 256%len(passwordAlphabet))
	for len(out) < GeneratedPasswordLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate password: read random bytes: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(out) < GeneratedPasswordLen {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}
