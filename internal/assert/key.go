// Package assert signs the assertion JWT that sekisho hands to an upstream app
// (header X-Sekisho-Assertion) and publishes the public keys that verify it
// as a JSON Web Key Set at /.sekisho/jwks.json.
//
// Tokens are ES256 (ECDSA P-256, SHA-256). Each key's "kid" is its RFC 7638
// JWK thumbprint, so the same key always has the same kid on every replica.
// Apps verify tokens with the public package pkg/verify.
package assert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	jose "github.com/go-jose/go-jose/v4"
)

// maxKeyFileSize bounds how much of a key file is read; a PEM P-256 key is
// about 240 bytes.
const maxKeyFileSize = 64 << 10

// LoadOrCreateKey returns the P-256 signing key stored at path as a PKCS#8 PEM
// file ("PRIVATE KEY"), creating it if the file does not exist.
//
// A new key is written with mode 0600 to a temporary file in the same
// directory and then linked into place, so a reader never sees a partial file
// and two processes starting at once end up using the same key. The directory
// must already exist.
//
// An existing file that group or others may read or write is refused (on
// systems with Unix permissions), as is a key that is not ECDSA P-256.
func LoadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if path == "" {
		return nil, errors.New("assertion key: no file path given")
	}
	key, err := loadKeyFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createKeyFile(path)
}

func loadKeyFile(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("assertion key %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("assertion key %s: mode %04o lets group or others access it; run chmod 600 %s",
			path, st.Mode().Perm(), path)
	}
	if st.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("assertion key %s: file is %d bytes, larger than any PEM key", path, st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	key, err := ParseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	return key, nil
}

func createKeyFile(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("assertion key: generating P-256 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("assertion key: encoding PKCS#8: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".sekisho-key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: creating temporary file: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a link the name is an extra entry; after a rename it is gone
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("assertion key %s: writing: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("assertion key %s: syncing: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}

	// Link fails if another process created the file first; then use theirs.
	switch err := os.Link(tmpName, path); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return loadKeyFile(path)
	default:
		// Some file systems have no hard links; fall back to rename.
		if err := os.Rename(tmpName, path); err != nil {
			return nil, fmt.Errorf("assertion key %s: moving into place: %w", path, err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: make the new directory entry durable
		d.Close()
	}
	return key, nil
}

// ParseKeyPEM parses a P-256 private key from PEM: PKCS#8 ("PRIVATE KEY") or
// SEC 1 ("EC PRIVATE KEY", what `openssl ecparam -genkey` writes). Only the
// first PEM block is read. Use it for a key given in config as a secret.
// Errors never include key material.
func ParseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found; want a \"PRIVATE KEY\" (PKCS#8) P-256 key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q; want \"PRIVATE KEY\" (PKCS#8) or \"EC PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: malformed key", block.Type)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T; sekisho signs ES256 and needs an ECDSA P-256 key", key)
	}
	if err := checkP256(&ec.PublicKey); err != nil {
		return nil, err
	}
	return ec, nil
}

func checkP256(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.Curve == nil {
		return errors.New("key has no curve")
	}
	if pub.Curve != elliptic.P256() {
		return fmt.Errorf("key uses curve %s; sekisho signs ES256 and needs P-256", pub.Curve.Params().Name)
	}
	return nil
}

// KeyID returns the kid sekisho gives a public key: its RFC 7638 JWK
// thumbprint (SHA-256), base64url without padding.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	if err := checkP256(pub); err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}
