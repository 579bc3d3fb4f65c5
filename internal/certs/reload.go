package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// fileSource serves the files-mode pair and loads it again when either
// file's modification time or size changes.
type fileSource struct {
	certFile, keyFile string
	interval          time.Duration // <= 0: only explicit reloads
	now               func() time.Time
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     [2]fileStamp
	lastCheck time.Time
}

// fileStamp is what tells a changed file apart without reading it.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func newFileSource(o Options) (*fileSource, error) {
	s := &fileSource{
		certFile: o.CertFile,
		keyFile:  o.KeyFile,
		interval: o.ReloadInterval,
		now:      o.Now,
		log:      o.Logger,
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// current returns the pair to serve, first loading it again when the check
// interval has passed and the files changed. A failed reload is logged and
// the previous pair kept.
func (s *fileSource) current() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interval > 0 && s.now().Sub(s.lastCheck) >= s.interval {
		s.lastCheck = s.now()
		if st, err := s.stat(); err == nil && st != s.stamp {
			if err := s.reloadLocked(); err != nil {
				s.log.Error("tls certificate reload failed; serving the previous certificate",
					"component", "certs", "cert_file", s.certFile, "key_file", s.keyFile, "error", err)
			}
		}
	}
	return s.cert
}

// reload loads the pair now, keeping the previous one on error.
func (s *fileSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *fileSource) reloadLocked() error {
	st, statErr := s.stat()
	cert, err := loadPair(s.certFile, s.keyFile, s.now())
	if err != nil {
		return err
	}
	if statErr == nil {
		s.stamp = st
	}
	s.lastCheck = s.now()
	if s.cert != nil {
		s.log.Info("tls certificate reloaded", "component", "certs", "cert_file", s.certFile,
			"not_after", cert.Leaf.NotAfter, "sha256", fingerprint(cert.Leaf))
	}
	s.cert = cert
	warnExpiry(s.log, s.certFile, cert, s.now())
	return nil
}

func (s *fileSource) stat() ([2]fileStamp, error) {
	var st [2]fileStamp
	var errs []error
	for i, p := range []string{s.certFile, s.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	}
	return st, errors.Join(errs...)
}

// expiryWarning is how close to expiry a served certificate gets a warning.
const expiryWarning = 14 * 24 * time.Hour

func warnExpiry(log *slog.Logger, name string, cert *tls.Certificate, now time.Time) {
	if left := cert.Leaf.NotAfter.Sub(now); left < expiryWarning {
		log.Warn(fmt.Sprintf("tls certificate %s expires in %d days", name, int(left.Hours()/24)),
			"component", "certs", "not_after", cert.Leaf.NotAfter)
	}
}
