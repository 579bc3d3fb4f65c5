package server

import (
	"fmt"
	"io"
	"os"

	"github.com/sekisho/sekisho/internal/audit"
)

func (s *Server) openAudit() error {
	a := s.cfg.Audit
	opts := audit.Options{
		MaxPending: a.MaxPending, Drop: a.OnFailure == "drop_and_count",
		Logger: s.log.With("component", "audit"),
	}
	switch a.Output {
	case "stdout":
		s.audit = audit.NewWithOptions(nopCloser{s.opts.Stdout}, opts)
	case "stderr":
		s.audit = audit.NewWithOptions(nopCloser{s.opts.Stderr}, opts)
	default:
		f, err := openAuditFile(a.Output)
		if err != nil {
			return err
		}
		s.audit = audit.NewWithOptions(f, opts)
	}
	s.closers = append(s.closers, s.audit.Close)
	return nil
}

// openAuditFile opens the audit file for appending. O_APPEND makes every
// write go to the end of the file, so after logrotate's copytruncate the
// lines start the emptied file instead of leaving a hole before them.
func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit.output: %w", err)
	}
	return f, nil
}

// Reopen is what SIGHUP does: when audit.output is a file, the path is
// opened anew and the audit log switches to it once the lines that wait
// went to the old file (which is then closed), so logrotate's "create"
// (the file was moved away) and "copytruncate" both work. With stdout or
// stderr there is nothing to reopen. On error the old file stays in use.
//
// serve's SIGHUP also reloads the config (ReloadWith), after this.
func (s *Server) Reopen() error {
	path := s.cfg.Audit.Output
	if path == "stdout" || path == "stderr" {
		s.log.Info("SIGHUP: nothing to reopen, the audit log goes to "+path, "component", "audit")
		return nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return fmt.Errorf("reopen the audit file (still writing to the old one): %w", err)
	}
	if err := s.audit.Switch(f); err != nil {
		return fmt.Errorf("reopen the audit file %s: %w", path, err)
	}
	s.log.Info("audit file reopened", "component", "audit", "path", path)
	return nil
}

// auditHealth is web.Portal's Health: an error, fit to be shown to anyone
// (it names no path nor cause), while the audit log cannot be written; the
// cause is on stderr and in Healthy.
func (s *Server) auditHealth() error {
	if s.audit.Healthy() != nil {
		return audit.ErrUnhealthy
	}
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
