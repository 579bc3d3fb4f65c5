// Package local signs users in with local accounts kept in the store:
// argon2id password hashes, a password policy, one-time passwords for the
// first admin, and a per-replica throttle against guessing.
package local

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters, as recorded in a PHC hash string.
type Params struct {
	// Memory is the memory cost in KiB (m=).
	Memory uint32
	// Time is the number of passes (t=).
	Time uint32
	// Threads is the degree of parallelism (p=).
	Threads uint8
	// SaltLen and KeyLen are the salt and derived key lengths in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams returns the parameters Hash uses: m=19456 KiB (19 MiB), t=2,
// p=1, a 16-byte salt and a 32-byte key — OWASP's minimum recommendation for
// argon2id. It is deliberately not higher: every concurrent login holds m KiB
// while it hashes, so on a small 2-core box a burst of 50 logins costs about
// 1 GiB at m=19 MiB but would cost 3 GiB at the 64 MiB of RFC 9106's second
// recommendation. The throttle bounds guessing; the hash only has to make an
// offline attack on a stolen database slow.
func DefaultParams() Params {
	return Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Bounds on parameters accepted from a stored hash. A hash read from a
// tampered or corrupt database must not make one login allocate gigabytes or
// spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 100
	maxThreads   = 64
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 128
)

// errHashFormat is wrapped by every parse error.
var errHashFormat = errors.New("malformed argon2id hash")

// Hash returns the PHC string of password under DefaultParams:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, base64 without padding.
// Callers should run CheckPassword first; Hash itself refuses only passwords
// longer than MaxPasswordBytes.
func Hash(password string) (string, error) {
	return hashWith(password, DefaultParams())
}

func hashWith(password string, p Params) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("password is %d bytes, longer than the %d allowed", len(password), MaxPasswordBytes)
	}
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return encodeHash(p, salt, key), nil
}

// Verify reports whether password matches the PHC hash, comparing in
// constant time. It returns an error (and false) when hash is malformed or
// its parameters are out of bounds — which, for a hash read from the store,
// means a corrupt or tampered database. Passwords longer than
// MaxPasswordBytes never match and are not hashed.
func Verify(hash, password string) (bool, error) {
	p, salt, key, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// NeedsRehash reports whether hash should be replaced at the next password
// change: it is malformed or was made with parameters other than
// DefaultParams.
func NeedsRehash(hash string) bool {
	p, _, _, err := parseHash(hash)
	return err != nil || p != DefaultParams()
}

func (p Params) check() error {
	switch {
	case p.Memory > maxMemoryKiB:
		return fmt.Errorf("%w: memory m=%d KiB above the %d KiB limit", errHashFormat, p.Memory, maxMemoryKiB)
	case p.Memory < 8*uint32(p.Threads):
		return fmt.Errorf("%w: memory m=%d KiB below 8 KiB per thread (p=%d)", errHashFormat, p.Memory, p.Threads)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("%w: time t=%d outside 1..%d", errHashFormat, p.Time, maxTime)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("%w: parallelism p=%d outside 1..%d", errHashFormat, p.Threads, maxThreads)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("%w: salt of %d bytes outside %d..%d", errHashFormat, p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("%w: key of %d bytes outside %d..%d", errHashFormat, p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

var b64 = base64.RawStdEncoding.Strict()

func encodeHash(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// maxHashLen bounds the input parseHash looks at: the longest valid string
// (limits above, base64 of 64 + 128 bytes) is well under it.
const maxHashLen = 512

// parseHash parses a PHC argon2id string strictly: exactly the form
// encodeHash writes (field order m,t,p; decimal without sign or leading
// zeros; unpadded canonical base64), version 19 and parameters within bounds.
// Any accepted string re-encodes to itself.
func parseHash(s string) (p Params, salt, key []byte, err error) {
	if len(s) > maxHashLen {
		return Params{}, nil, nil, fmt.Errorf("%w: %d bytes long", errHashFormat, len(s))
	}
	if strings.ContainsAny(s, "\r\n") {
		// encoding/base64 skips CR and LF even in strict mode.
		return Params{}, nil, nil, fmt.Errorf("%w: contains a line break", errHashFormat)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return Params{}, nil, nil, fmt.Errorf("%w: want $argon2id$v=19$m=,t=,p=$salt$hash", errHashFormat)
	}
	if parts[1] != "argon2id" {
		return Params{}, nil, nil, fmt.Errorf("%w: algorithm %q, want argon2id", errHashFormat, parts[1])
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return Params{}, nil, nil, fmt.Errorf("%w: missing v=", errHashFormat)
	}
	if n, err := parseDecimal(v); err != nil || n != argon2.Version {
		return Params{}, nil, nil, fmt.Errorf("%w: version %q, want %d", errHashFormat, v, argon2.Version)
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return Params{}, nil, nil, fmt.Errorf("%w: want parameters m=,t=,p=", errHashFormat)
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		num, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return Params{}, nil, nil, fmt.Errorf("%w: parameter %d is not %s", errHashFormat, i+1, name)
		}
		if vals[i], err = parseDecimal(num); err != nil {
			return Params{}, nil, nil, fmt.Errorf("%w: %s%q: %w", errHashFormat, name, num, err)
		}
	}
	if vals[0] > maxMemoryKiB || vals[1] > maxTime || vals[2] > maxThreads {
		return Params{}, nil, nil, fmt.Errorf("%w: parameters m=%d,t=%d,p=%d above the limits m=%d,t=%d,p=%d",
			errHashFormat, vals[0], vals[1], vals[2], maxMemoryKiB, maxTime, maxThreads)
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: salt is not unpadded base64", errHashFormat)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: key is not unpadded base64", errHashFormat)
	}
	p = Params{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2]),
		SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if err := p.check(); err != nil {
		return Params{}, nil, nil, err
	}
	return p, salt, key, nil
}

// parseDecimal accepts only canonical non-negative decimal numbers of up to
// 10 digits: no sign, no leading zeros, no spaces.
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical decimal number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a canonical decimal number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
