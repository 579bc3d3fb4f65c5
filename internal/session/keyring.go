package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
)

// KeySize is the length in bytes of every session key (AES-256).
const KeySize = 32

// keyIDSize is the length of the key id that prefixes every sealed value.
const keyIDSize = 4

// Overhead is how many bytes Keyring.Seal adds to a plaintext: the key id,
// the 12-byte random nonce and the 16-byte GCM tag.
const Overhead = keyIDSize + 12 + 16

// Keyring seals with its first key and opens with any of its keys, so keys can
// be rotated: put the new key first and keep the old ones until every cookie
// sealed with them has expired (the absolute session lifetime).
//
// Sealing uses AES-256-GCM with a random 96-bit nonce. A single key should not
// seal more than 2^32 values; rotate keys well before that (a year of a busy
// gateway is far below it).
//
// A Keyring is safe for concurrent use. The zero value holds no key and is
// not usable; build one with NewKeyring.
type Keyring struct {
	ring atomic.Pointer[ring] // Replace swaps it
}

// ring is one set of keys: keys[0] seals, all open. sum identifies the set
// (a SHA-256 over the keys in order), so Replace with the same keys keeps
// the ring, and what was cached under it.
type ring struct {
	keys []ringKey
	sum  [sha256.Size]byte
}

type ringKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// keyID is the first bytes of a domain-separated SHA-256 of the key. It
// selects the key when opening and reveals nothing useful about the key.
func keyID(key []byte) [keyIDSize]byte {
	h := sha256.New()
	h.Write([]byte("sekisho session key id\x00"))
	h.Write(key)
	var id [keyIDSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// NewKeyring returns a keyring over keys. There must be at least one key,
// each exactly KeySize bytes and all distinct; the first key seals and every
// key opens. The keys are not retained by reference.
func NewKeyring(keys [][]byte) (*Keyring, error) {
	r, err := newRing(keys)
	if err != nil {
		return nil, err
	}
	k := &Keyring{}
	k.ring.Store(r)
	return k, nil
}

// Replace puts keys in place of the ring's keys, at once for every Seal and
// Open that follows (a config reload rotating session.keys: list the new
// key first and keep the old one, so cookies sealed with it still open; drop
// it later to end them). The same rules as NewKeyring hold; on error
// nothing changes, and the same keys in the same order change nothing.
func (k *Keyring) Replace(keys [][]byte) error {
	r, err := newRing(keys)
	if err != nil {
		return err
	}
	if k.ring.Load().sum != r.sum {
		k.ring.Store(r)
	}
	return nil
}

func newRing(keys [][]byte) (*ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("session: keyring needs at least one key")
	}
	r := &ring{keys: make([]ringKey, 0, len(keys))}
	sum := sha256.New()
	sum.Write([]byte("sekisho session key set\x00"))
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("session: key %d is %d bytes, want %d", i, len(key), KeySize)
		}
		id := keyID(key)
		for j, prev := range r.keys {
			if prev.id == id {
				return nil, fmt.Errorf("session: keys %d and %d have the same key id (duplicate key)", j, i)
			}
		}
		block, err := aes.NewCipher(bytes.Clone(key))
		if err != nil {
			return nil, fmt.Errorf("session: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("session: key %d: %w", i, err)
		}
		r.keys = append(r.keys, ringKey{id: id, aead: aead})
		sum.Write(key)
	}
	sum.Sum(r.sum[:0])
	return r, nil
}

// Seal encrypts and authenticates plaintext with the first key, binding ad
// (additional data, e.g. the cookie name) so the result opens only with the
// same ad. The result is key id || nonce || ciphertext || tag and is
// len(plaintext)+Overhead bytes long.
func (k *Keyring) Seal(plaintext, ad []byte) []byte {
	key := k.ring.Load().keys[0]
	out := make([]byte, keyIDSize, len(plaintext)+Overhead)
	copy(out, key.id[:])
	return key.aead.Seal(out, nil, plaintext, k.additional(key.id, ad))
}

// Open reverses Seal. It fails if sealed is too short, names no key in the
// ring, was sealed with a different ad, or was altered in any way.
func (k *Keyring) Open(sealed, ad []byte) ([]byte, error) {
	return k.open(k.ring.Load(), sealed, ad)
}

// open is Open with the given set of keys.
func (k *Keyring) open(r *ring, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed value is %d bytes, shorter than the %d-byte minimum", len(sealed), Overhead)
	}
	var id [keyIDSize]byte
	copy(id[:], sealed)
	for _, key := range r.keys {
		if key.id != id {
			continue
		}
		pt, err := key.aead.Open(nil, nil, sealed[keyIDSize:], k.additional(id, ad))
		if err != nil {
			return nil, errors.New("sealed value failed authentication (tampered, or sealed for another name)")
		}
		return pt, nil
	}
	return nil, errors.New("sealed value names a key not in the keyring")
}

// additional binds the key id and the caller's ad. Both are short, so the
// allocation is cheap; the key id is bound too so it cannot be swapped.
func (k *Keyring) additional(id [keyIDSize]byte, ad []byte) []byte {
	b := make([]byte, 0, keyIDSize+len(ad))
	b = append(b, id[:]...)
	return append(b, ad...)
}

// ParseKey decodes a key given in config as base64: standard or URL alphabet,
// padded or not, surrounding white space ignored. It must decode to exactly
// KeySize bytes. Errors never contain the key text.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if s == "" {
		return nil, errors.New("session key is empty")
	}
	key, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("session key is not valid base64")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("session key decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(key), KeySize)
	}
	return key, nil
}

// LoadOrCreateKeyFile reads the base64 key stored at path, or, if no file is
// there, generates a random key and writes it there with mode 0600 (creating
// the parent directory with mode 0700 if needed). The file is written to a
// temporary name and then linked into place, so a reader never sees a partial
// key and two processes starting at once end up with the same key.
//
// An existing file that group or others may read or write is refused (except
// on Windows, where Unix modes do not apply), as is one that does not hold a
// KeySize-byte base64 key.
func LoadOrCreateKeyFile(path string) ([]byte, error) {
	key, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("session: create key directory: %w", err)
	}
	key = make([]byte, KeySize)
	rand.Read(key) // never fails (crypto/rand since Go 1.24)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("session: create key file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return nil, fmt.Errorf("session: create key file %s: %w", path, err)
	}
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("session: write key file %s: %w", path, err)
	}
	// Link fails if another process created the file meanwhile; then its key wins.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(path)
		}
		// Filesystems without hard links: fall back to rename.
		if err := os.Rename(tmpName, path); err != nil {
			return nil, fmt.Errorf("session: install key file %s: %w", path, err)
		}
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("session: open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("session: stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("session: key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("session: key file %s has mode %04o, open to group or others; run: chmod 600 %s", path, perm, path)
	}
	const maxKeyFile = 256
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("session: read key file %s: %w", path, err)
	}
	if len(buf) > maxKeyFile {
		return nil, fmt.Errorf("session: key file %s is too large to hold a %d-byte base64 key", path, KeySize)
	}
	key, err := ParseKey(string(buf))
	if err != nil {
		return nil, fmt.Errorf("session: key file %s: %w", path, err)
	}
	return key, nil
}
