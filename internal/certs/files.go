package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// loadPair reads a PEM certificate chain and its private key and checks that
// they belong together and that the leaf is valid at now. It returns every
// problem it finds, each naming the file it is about.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	var errs []error
	if certFile == "" {
		errs = append(errs, errors.New("tls cert_file is empty: files mode needs a certificate file"))
	}
	if keyFile == "" {
		errs = append(errs, errors.New("tls key_file is empty: files mode needs a private key file"))
	}
	var chain []*x509.Certificate
	var ders [][]byte
	if certFile != "" {
		var err error
		ders, chain, err = readChain(certFile)
		errs = append(errs, err)
	}
	var key crypto.Signer
	if keyFile != "" {
		var err error
		key, err = readKey(keyFile)
		errs = append(errs, err)
	}
	if len(chain) > 0 {
		leaf := chain[0]
		if now.After(leaf.NotAfter) {
			errs = append(errs, fmt.Errorf("certificate %s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
		if now.Before(leaf.NotBefore) {
			errs = append(errs, fmt.Errorf("certificate %s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339)))
		}
		if key != nil && !publicKeysEqual(leaf.PublicKey, key.Public()) {
			errs = append(errs, fmt.Errorf("private key %s does not match the certificate in %s", keyFile, certFile))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: chain[0]}, nil
}

// readChain returns the CERTIFICATE blocks of a PEM file, leaf first.
func readChain(path string) ([][]byte, []*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate file: %w", err)
	}
	var ders [][]byte
	var certs []*x509.Certificate
	var errs []error
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate file %s: certificate %d does not parse: %w", path, len(ders)+len(errs)+1, err))
			continue
		}
		ders = append(ders, block.Bytes)
		certs = append(certs, c)
	}
	if len(ders) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("certificate file %s is not PEM: it has no CERTIFICATE block", path))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return ders, certs, nil
}

// readKey returns the first private key in a PEM file.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private key file: %w", err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("private key file %s is not PEM: it has no PRIVATE KEY block", path)
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
			return nil, fmt.Errorf("private key file %s is encrypted; sekisho needs an unencrypted key (keep the file mode 0600)", path)
		}
		key, err := parseKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key file %s: %w", path, err)
		}
		return key, nil
	}
}

// parseKey accepts PKCS#8, PKCS#1 (RSA) and SEC 1 (EC) DER.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", k)
		}
		return s, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("the key is not PKCS#8, PKCS#1 or SEC 1 DER")
}

// publicKeysEqual compares the public key of a certificate with a key's.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch a.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		e, ok := a.(equaler)
		return ok && e.Equal(b)
	}
	return false
}
