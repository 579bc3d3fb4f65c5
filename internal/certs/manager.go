package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Manager serves the listener's certificates for one Options. It is safe
// for concurrent use.
type Manager struct {
	opts   Options
	files  *fileSource       // files mode
	static *tls.Certificate  // self_signed mode
	acme   *autocert.Manager // acme mode
}

// New validates opts, then loads (files), loads or creates (self_signed) or
// prepares (acme) the certificates. It returns every problem found, joined.
// In acme mode New does not contact the CA; the first handshake for a
// configured domain does, and later handshakes use the cache.
func New(opts Options) (*Manager, error) {
	o := opts.normalized()
	if err := o.validate(); err != nil {
		return nil, err
	}
	m := &Manager{opts: o}
	var err error
	switch o.Mode {
	case ModeSelfSigned:
		m.static, err = selfSigned(o)
	case ModeFiles:
		m.files, err = newFileSource(o)
	case ModeACME:
		m.acme, err = newAutocert(o)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Check validates opts the way New does, without network access and without
// writing anything: it reads the certificate, key and CA roots files the
// options name. It returns every problem found, joined; nil means New would
// start (barring an unwritable data dir). This is what `sekisho check` runs.
func Check(opts Options) error {
	return opts.normalized().validate()
}

// Mode returns the normalized mode ("off" for an empty Options.Mode).
func (m *Manager) Mode() string { return m.opts.Mode }

// TLSConfig returns a new tls.Config for the HTTPS listener: TLS 1.2 or later,
// ALPN h2 and http/1.1 (and acme-tls/1 in acme mode, for TLS-ALPN-01
// challenges), certificates from GetCertificate. It returns nil in mode off.
func (m *Manager) TLSConfig() *tls.Config {
	if m.opts.Mode == ModeOff {
		return nil
	}
	protos := []string{"h2", "http/1.1"}
	if m.acme != nil {
		protos = append(protos, acme.ALPNProto)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
		GetCertificate: m.GetCertificate,
	}
}

// GetCertificate returns the certificate for a handshake. In acme mode it
// refuses a server name outside ACMEOptions.Domains without contacting the
// CA; in files mode it may first reload changed files (see Options.CertFile).
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	switch {
	case m.acme != nil:
		return m.acme.GetCertificate(hello)
	case m.files != nil:
		return m.files.current(), nil
	case m.static != nil:
		return m.static, nil
	}
	return nil, errors.New("tls is off")
}

// Reload loads the files-mode pair again at once. On error, which lists every
// problem, the previous pair keeps being served. In other modes it does
// nothing and returns nil.
func (m *Manager) Reload() error {
	if m.files == nil {
		return nil
	}
	if err := m.files.reload(); err != nil {
		return fmt.Errorf("tls reload: %w", err)
	}
	return nil
}

// allowedHost is Options.AllowedHost or, when nil, the names the
// certificate covers.
func (m *Manager) allowedHost(host string) bool {
	if m.opts.AllowedHost != nil {
		return m.opts.AllowedHost(host)
	}
	var leafCert *tls.Certificate
	switch {
	case m.acme != nil:
		return domainSet(m.opts.ACME.Domains)(host)
	case m.files != nil:
		leafCert = m.files.current()
	case m.static != nil:
		leafCert = m.static
	}
	if leafCert == nil || leafCert.Leaf == nil || strings.HasPrefix(host, "*") {
		return false
	}
	return leafCert.Leaf.VerifyHostname(host) == nil
}

// HTTPHandler returns the handler for the plain-HTTP listener. With TLS on,
// it answers ACME HTTP-01 challenges (acme mode) and redirects every other
// request with 308 to the same host, path and query over https; a Host that
// is not allowed (see Options.AllowedHost) gets 400, so the redirect can
// never point at a host an attacker chose. fallback is used only in mode
// off, where it serves plain HTTP itself; nil fallback means 404 there.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if m.opts.Mode == ModeOff {
		if fallback == nil {
			return http.NotFoundHandler()
		}
		return fallback
	}
	redirect := &redirector{allowed: m.allowedHost, port: m.opts.HTTPSPort}
	if m.acme != nil {
		return m.acme.HTTPHandler(redirect)
	}
	return redirect
}
