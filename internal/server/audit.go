package server

import (
	"fmt"
	"io"
	"os"

	"github.com/sekisho/sekisho/internal/audit"
)

func (s *Server) openAudit() error {
	switch out := s.cfg.Audit.Output; out {
	case "stdout":
		s.audit = audit.New(nopCloser{s.opts.Stdout})
	case "stderr":
		s.audit = audit.New(nopCloser{s.opts.Stderr})
	default:
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("audit.output: %w", err)
		}
		s.audit = audit.New(f)
	}
	s.closers = append(s.closers, s.audit.Close)
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
