package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names of the cached self-signed pair inside DataDir.
const (
	SelfSignedCertFile = "selfsigned.crt"
	SelfSignedKeyFile  = "selfsigned.key"
)

// selfSigned returns the cached self-signed pair from o.DataDir when it is
// intact, covers exactly o.SelfSignedHosts and is not within
// SelfSignedRenewBefore of expiry; otherwise it generates a new one and, when
// DataDir is set, stores it there (key mode 0600).
func selfSigned(o Options) (*tls.Certificate, error) {
	now := o.Now()
	var certPath, keyPath string
	if o.DataDir != "" {
		certPath = filepath.Join(o.DataDir, SelfSignedCertFile)
		keyPath = filepath.Join(o.DataDir, SelfSignedKeyFile)
		cert, err := loadPair(certPath, keyPath, now)
		switch {
		case err == nil && !sameHosts(cert.Leaf, o.SelfSignedHosts):
			o.Logger.Info("self-signed certificate names changed; generating a new one", "component", "certs")
		case err == nil && cert.Leaf.NotAfter.Sub(now) < SelfSignedRenewBefore:
			o.Logger.Info("self-signed certificate expires soon; generating a new one", "component", "certs",
				"not_after", cert.Leaf.NotAfter)
		case err == nil:
			logSelfSigned(o, cert, certPath)
			return cert, nil
		case !bothMissing(certPath, keyPath):
			o.Logger.Warn("cached self-signed certificate is unusable; generating a new one",
				"component", "certs", "error", err)
		}
	}
	certPEM, keyPEM, err := generateSelfSigned(o.SelfSignedHosts, now)
	if err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("tls data dir: %w", err)
		}
		if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("self-signed key: %w", err)
		}
		if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("generated self-signed certificate: %w", err)
	}
	logSelfSigned(o, &cert, certPath)
	return &cert, nil
}

func logSelfSigned(o Options, cert *tls.Certificate, path string) {
	o.Logger.Info("serving a self-signed certificate; browsers will warn until it is trusted",
		"component", "certs", "hosts", o.SelfSignedHosts, "file", path,
		"not_after", cert.Leaf.NotAfter, "sha256", fingerprint(cert.Leaf))
}

// generateSelfSigned makes an ECDSA P-256 leaf for hosts, valid from now
// (less a minute of clock skew) for SelfSignedValidity.
func generateSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"sekisho self-signed"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// sameHosts reports whether leaf names exactly the hosts (in any order).
func sameHosts(leaf *x509.Certificate, hosts []string) bool {
	var have, want []string
	for _, d := range leaf.DNSNames {
		have = append(have, strings.ToLower(d))
	}
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			want = append(want, ip.String())
		} else {
			want = append(want, strings.ToLower(h))
		}
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

func bothMissing(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			return false
		}
	}
	return true
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fingerprint is the SHA-256 of the certificate's DER, hex with colons, as
// browsers show it.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
