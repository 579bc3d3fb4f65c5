// Package session issues and reads sekisho's browser session cookie: a small
// sealed (AES-256-GCM) value that carries who the user is, so reading it needs
// no store round-trip, and an in-memory revocation set, fed from the store by
// a poller, so logout and "sekisho user disable" still take effect at once on
// this replica and within one poll interval on the others.
package session

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

// idSize is the number of random bytes in a session ID.
const idSize = 16

// encodingVersion is the first byte of every encoded session. Version 2
// added Host, the host or sign-in domain the session is bound to. Cookies of
// version 1 carry no host and are refused as ErrInvalid: after an upgrade
// every user signs in once more.
const encodingVersion = 2

// Session is what the cookie carries. Times have second precision; Seal drops
// anything finer.
type Session struct {
	// ID is 16 random bytes, base64url without padding (22 characters). It
	// names the session for logout and audit.
	ID string
	// User is the principal's stable name (see identity.Identity.User).
	User string
	// Email is the verified email address, or "".
	Email string
	// Groups the user belongs to. Every group costs cookie bytes; map only the
	// groups policies need.
	Groups []string
	// Provider is "local" or the configured OIDC provider name.
	Provider string
	// Host is what the session is bound to: the canonical host (see
	// CanonicalHost) it was issued on, such as "app.example.com", or, when
	// it was issued under the codec's sign-in domain, "." followed by that
	// domain, such as ".example.com" (the domain and every host under it).
	// "" is the empty Host header, and only matches that. Read refuses the
	// session anywhere else (ErrWrongHost).
	Host string
	// AuthTime is when the user last proved their credential.
	AuthTime time.Time
	// IssuedAt is when the session began; the absolute lifetime counts from it.
	IssuedAt time.Time
	// LastSeen is when the cookie was last (re-)issued; the idle timeout
	// counts from it.
	LastSeen time.Time
}

// Identity returns the identity the session proves, of Kind identity.Session.
// Groups is a copy.
func (s Session) Identity() identity.Identity {
	return identity.Identity{
		Kind:      identity.Session,
		User:      s.User,
		Email:     s.Email,
		Groups:    slices.Clone(s.Groups),
		Provider:  s.Provider,
		SessionID: s.ID,
		AuthTime:  s.AuthTime,
	}
}

// NewID returns a fresh random session ID: 16 bytes, base64url, no padding.
func NewID() string {
	var b [idSize]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decodeID parses a session ID as NewID makes it. Strict decoding rejects
// non-canonical trailing bits, so one ID has exactly one spelling.
func decodeID(id string) ([idSize]byte, error) {
	var out [idSize]byte
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != idSize {
		return out, fmt.Errorf("session ID %q is not %d bytes of unpadded base64url", id, idSize)
	}
	copy(out[:], b)
	return out, nil
}

// encode appends the binary form of s to dst:
//
//	version(1) id(16) authTime issuedAt lastSeen (varint Unix seconds)
//	host user email provider (uvarint length + bytes) nGroups(uvarint) groups...
func (s *Session) encode(dst []byte) ([]byte, error) {
	id, err := decodeID(s.ID)
	if err != nil {
		return nil, err
	}
	dst = append(dst, encodingVersion)
	dst = append(dst, id[:]...)
	dst = binary.AppendVarint(dst, s.AuthTime.Unix())
	dst = binary.AppendVarint(dst, s.IssuedAt.Unix())
	dst = binary.AppendVarint(dst, s.LastSeen.Unix())
	dst = appendString(dst, s.Host)
	dst = appendString(dst, s.User)
	dst = appendString(dst, s.Email)
	dst = appendString(dst, s.Provider)
	dst = binary.AppendUvarint(dst, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		dst = appendString(dst, g)
	}
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

var errMalformed = errors.New("malformed session encoding")

// decodeSession parses what encode wrote. It rejects unknown versions,
// truncation, lengths past the end and trailing bytes; it allocates no more
// than a small multiple of len(b).
func decodeSession(b []byte) (Session, error) {
	d := decoder{b: b}
	switch v := d.byte(); {
	case d.err:
		return Session{}, fmt.Errorf("%w: empty", errMalformed)
	case v == 1:
		return Session{}, fmt.Errorf("%w: version 1, from before sessions were bound to a host (the user signs in again)", errMalformed)
	case v != encodingVersion:
		return Session{}, fmt.Errorf("%w: version %d", errMalformed, v)
	}
	id := d.bytes(idSize)
	var s Session
	s.AuthTime = d.time()
	s.IssuedAt = d.time()
	s.LastSeen = d.time()
	s.Host = d.string()
	s.User = d.string()
	s.Email = d.string()
	s.Provider = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each group takes at least one byte
		d.err = true
	}
	if !d.err && n > 0 {
		s.Groups = make([]string, 0, n)
		for range n {
			s.Groups = append(s.Groups, d.string())
			if d.err {
				break
			}
		}
	}
	if d.err {
		return Session{}, fmt.Errorf("%w: truncated or bad length", errMalformed)
	}
	if len(d.b) != 0 {
		return Session{}, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.b))
	}
	s.ID = base64.RawURLEncoding.EncodeToString(id)
	return s, nil
}

// decoder reads from b; after the first error every read returns a zero
// value and err stays true.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if d.err || len(d.b) < 1 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if d.err || len(d.b) < n {
		d.err = true
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) uvarint() uint64 {
	if d.err {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) time() time.Time {
	if d.err {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(v, 0).UTC()
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	return string(d.bytes(int(n)))
}
