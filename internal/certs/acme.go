package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// newAutocert builds the ACME manager for o (normalized and validated). It
// does not contact the CA: certificates are requested on the first handshake
// for a configured domain, and served from the cache afterwards.
func newAutocert(o Options) (*autocert.Manager, error) {
	if err := os.MkdirAll(o.ACME.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme cache dir: %w", err)
	}
	hc := o.ACME.HTTPClient
	if hc == nil {
		var err error
		hc, err = acmeHTTPClient(o.ACME.CARootsFile)
		if err != nil {
			return nil, err
		}
	}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(o.ACME.CacheDir),
		HostPolicy: autocert.HostWhitelist(o.ACME.Domains...),
		Email:      o.ACME.Email,
		Client:     &acme.Client{DirectoryURL: o.ACME.DirectoryURL, HTTPClient: hc},
	}, nil
}

// acmeHTTPClient returns a client trusting the system roots plus the roots in
// rootsFile (none when empty).
func acmeHTTPClient(rootsFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if rootsFile != "" {
		roots, err := readRoots(rootsFile)
		if err != nil {
			return nil, err
		}
		for _, c := range roots {
			pool.AddCert(c)
		}
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		tr = &http.Transport{}
	}
	tr = tr.Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// readRoots reads the CA certificates of a PEM file.
func readRoots(path string) ([]*x509.Certificate, error) {
	_, roots, err := readChain(path)
	if err != nil {
		return nil, fmt.Errorf("acme ca_roots_file: %w", err)
	}
	return roots, nil
}

// domainSet is a host matcher for the ACME domains.
func domainSet(domains []string) func(string) bool {
	set := make(map[string]bool, len(domains))
	for _, d := range domains {
		set[strings.TrimSuffix(strings.ToLower(d), ".")] = true
	}
	return func(h string) bool { return set[h] }
}
