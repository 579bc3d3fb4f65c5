// Package certs provides the TLS side of sekisho's listener: certificates from
// static files, from an ACME directory (Let's Encrypt or any other), or a
// self-signed one for localhost; the plain-HTTP handler that answers ACME
// HTTP-01 challenges and redirects everything else to HTTPS; and HSTS.
//
// New loads and validates everything it can before the listener starts, and
// Check runs the same validation without network access or writes, for
// `sekisho check`. Both list every problem they find (errors.Join).
package certs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Modes accepted in Options.Mode.
const (
	// ModeOff serves plain HTTP only; New returns a Manager whose TLSConfig is nil.
	ModeOff = "off"
	// ModeSelfSigned serves a generated self-signed certificate (for localhost).
	ModeSelfSigned = "self_signed"
	// ModeFiles serves a certificate and key read from PEM files.
	ModeFiles = "files"
	// ModeACME obtains certificates from an ACME directory.
	ModeACME = "acme"
)

// Defaults used when the matching option is zero.
const (
	// DefaultReloadInterval is how often, at most, files mode looks at the
	// modification times of CertFile and KeyFile during handshakes.
	DefaultReloadInterval = 10 * time.Second
	// DefaultHSTSMaxAge is the max-age HSTS sends when given zero.
	DefaultHSTSMaxAge = 365 * 24 * time.Hour
	// SelfSignedValidity is how long a generated self-signed certificate is valid.
	SelfSignedValidity = 365 * 24 * time.Hour
	// SelfSignedRenewBefore is how long before expiry a cached self-signed
	// certificate is replaced by a new one.
	SelfSignedRenewBefore = 7 * 24 * time.Hour
)

// defaultSelfSignedHosts is never mutated; DefaultSelfSignedHosts copies it.
var defaultSelfSignedHosts = []string{"localhost", "127.0.0.1", "::1"}

// DefaultSelfSignedHosts returns the names a self-signed certificate covers
// when Options.SelfSignedHosts is empty: localhost, 127.0.0.1 and ::1.
func DefaultSelfSignedHosts() []string {
	return append([]string(nil), defaultSelfSignedHosts...)
}

// Options configure a Manager. The zero value is Mode "off".
type Options struct {
	// Mode is one of "off" (also ""), "self_signed", "files" or "acme".
	Mode string

	// CertFile and KeyFile are PEM files for files mode: the certificate
	// chain (leaf first) and its private key (PKCS#1, PKCS#8 or SEC 1).
	// Both are required in files mode and ignored otherwise. When either
	// file's modification time or size changes, the pair is loaded again:
	// during a handshake at most once per ReloadInterval, or at once by
	// Manager.Reload. A pair that fails to load is logged and the previous
	// one is kept.
	CertFile, KeyFile string
	// ReloadInterval is how often, at most, handshakes look for changed
	// files in files mode. Zero means DefaultReloadInterval (10s); negative
	// turns the check off (only Manager.Reload reloads).
	ReloadInterval time.Duration

	// SelfSignedHosts are the DNS names and IP addresses a self-signed
	// certificate covers. Empty means localhost, 127.0.0.1 and ::1.
	SelfSignedHosts []string

	// ACME configures acme mode.
	ACME ACMEOptions

	// DataDir is where state lives: the self-signed certificate
	// (selfsigned.crt, selfsigned.key with mode 0600) and, unless
	// ACME.CacheDir says otherwise, ACME certificates in DataDir/acme.
	// Empty in self_signed mode means the certificate is kept in memory
	// only and is new on every start; empty in acme mode requires
	// ACME.CacheDir.
	DataDir string

	// AllowedHost reports whether the plain-HTTP handler may redirect a
	// request carrying this Host (lower-case, port and IPv6 brackets
	// removed) to https. Nil means the names the certificate covers: the
	// ACME domains, the self-signed hosts, or the DNS and IP names of the
	// files-mode certificate (wildcards included).
	AllowedHost func(host string) bool
	// HTTPSPort is the port of the HTTPS listener, put in redirect targets.
	// Zero or 443 means no port in the target.
	HTTPSPort int

	// Now is the clock used to judge certificate validity. Nil means time.Now.
	Now func() time.Time
	// Logger receives warnings (certificate close to expiry, reload
	// failures) and the self-signed fingerprint. Nil means no logging.
	Logger *slog.Logger
}

// ACMEOptions configure acme mode.
type ACMEOptions struct {
	// DirectoryURL is the ACME directory. Empty means Let's Encrypt
	// production (acme.LetsEncryptURL). It must be an https URL.
	DirectoryURL string
	// Email is the account contact given to the CA. Empty means none.
	Email string
	// Domains are the only names certificates are requested for; a
	// handshake for any other name is refused without contacting the CA.
	// Required in acme mode; wildcards and IP addresses are not accepted.
	Domains []string
	// CacheDir holds the ACME account key and the certificates. Empty means
	// DataDir/acme.
	CacheDir string
	// CARootsFile is a PEM file of extra roots trusted, besides the system
	// roots, when talking to the ACME server (for example a private CA or
	// pebble's). Empty means system roots only. Ignored when HTTPClient is set.
	CARootsFile string
	// HTTPClient talks to the ACME server. Nil means a client that trusts
	// the system roots plus CARootsFile.
	HTTPClient *http.Client
}

// normalized returns a copy of o with defaults filled in.
func (o Options) normalized() Options {
	if o.Mode == "" {
		o.Mode = ModeOff
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = DefaultReloadInterval
	}
	if len(o.SelfSignedHosts) == 0 {
		o.SelfSignedHosts = DefaultSelfSignedHosts()
	}
	if o.ACME.DirectoryURL == "" {
		o.ACME.DirectoryURL = acme.LetsEncryptURL
	}
	if o.ACME.CacheDir == "" && o.DataDir != "" {
		o.ACME.CacheDir = filepath.Join(o.DataDir, "acme")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate checks o (normalized) without touching the network or writing
// anything; it reads the files the mode names. It returns every problem.
func (o Options) validate() error {
	var errs []error
	switch o.Mode {
	case ModeOff:
	case ModeSelfSigned:
		errs = append(errs, validateHosts(o.SelfSignedHosts)...)
		errs = append(errs, checkDir("tls data dir", o.DataDir))
	case ModeFiles:
		_, err := loadPair(o.CertFile, o.KeyFile, o.Now())
		errs = append(errs, err)
	case ModeACME:
		errs = append(errs, o.ACME.validate(o.DataDir)...)
	default:
		errs = append(errs, fmt.Errorf("tls mode %q is unknown (want off, self_signed, files or acme)", o.Mode))
	}
	if o.HTTPSPort < 0 || o.HTTPSPort > 65535 {
		errs = append(errs, fmt.Errorf("tls https port %d is out of range", o.HTTPSPort))
	}
	return errors.Join(errs...)
}

func (a ACMEOptions) validate(dataDir string) []error {
	var errs []error
	u, err := url.Parse(a.DirectoryURL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("acme directory url %q does not parse: %v", a.DirectoryURL, err))
	case u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("acme directory url %q must be an https URL", a.DirectoryURL))
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			errs = append(errs, fmt.Errorf("acme email %q is not an email address", a.Email))
		}
	}
	if len(a.Domains) == 0 {
		errs = append(errs, errors.New("acme domains are empty: name at least one domain to request a certificate for"))
	}
	seen := map[string]bool{}
	for _, d := range a.Domains {
		if err := validateDomain(d); err != nil {
			errs = append(errs, fmt.Errorf("acme domain %q: %w", d, err))
			continue
		}
		if seen[strings.ToLower(d)] {
			errs = append(errs, fmt.Errorf("acme domain %q is listed twice", d))
		}
		seen[strings.ToLower(d)] = true
	}
	if a.CacheDir == "" {
		errs = append(errs, errors.New("acme cache dir is empty: set the data dir or acme cache_dir"))
	} else if err := checkDir("acme cache dir", a.CacheDir); err != nil {
		errs = append(errs, err)
	}
	if a.CARootsFile != "" && a.HTTPClient == nil {
		if _, err := readRoots(a.CARootsFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// validateDomain accepts a DNS name for which a public certificate can be
// requested: no wildcard, no IP address, no port, at least two labels.
func validateDomain(d string) error {
	switch {
	case d == "":
		return errors.New("is empty")
	case strings.HasPrefix(d, "*."):
		return errors.New("wildcards need DNS-01 challenges, which are not supported")
	case net.ParseIP(d) != nil:
		return errors.New("is an IP address; ACME certificates are for DNS names")
	case !strings.Contains(strings.Trim(d, "."), "."):
		return errors.New("needs at least two labels (like app.example.com)")
	}
	return validateDNSName(d)
}

// validateDNSName checks the letters-digits-hyphen form of a DNS name.
func validateDNSName(d string) error {
	d = strings.TrimSuffix(d, ".")
	if len(d) > 253 {
		return errors.New("is longer than 253 characters")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("has an empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("has character %q; use the punycode (xn--) form for international names", c)
			}
		}
	}
	return nil
}

// validateHosts checks self-signed SANs: each a DNS name or an IP address.
func validateHosts(hosts []string) []error {
	var errs []error
	for _, h := range hosts {
		if net.ParseIP(h) != nil {
			continue
		}
		if err := validateDNSName(strings.TrimPrefix(h, "*.")); err != nil {
			errs = append(errs, fmt.Errorf("self-signed host %q: %w", h, err))
		}
	}
	return errs
}

// checkDir reports a problem when dir exists and is not a directory.
// A missing dir is fine: it is created on start.
func checkDir(what, dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%s %s is not a directory", what, dir)
	}
	return nil
}
