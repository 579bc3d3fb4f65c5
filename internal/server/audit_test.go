package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/web"
)

// auditFileServer is a gateway whose audit log goes to a file in a temp dir.
func auditFileServer(t *testing.T) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	return newServer(t, testConfig(t, "audit: {output: "+path+"}\n"), nil, io.Discard), path
}

// requestPaths sends an anonymous GET for each path (each gets an audit
// line, a "login" decision) and flushes the audit log.
func requestPaths(t *testing.T, s *Server, paths ...string) {
	t.Helper()
	for _, p := range paths {
		s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if err := s.audit.Flush(); err != nil {
		t.Fatal(err)
	}
}

// auditPaths returns the path of each line of the audit file, failing on a
// line that is not JSON (torn, or a hole of NULs before it).
func auditPaths(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, ln := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if ln == "" {
			continue
		}
		var e audit.Entry
		if err := json.Unmarshal([]byte(ln), &e); err != nil {
			t.Fatalf("%s: line is not JSON: %q", file, ln)
		}
		paths = append(paths, e.Path)
	}
	return paths
}

func TestAuditReopen(t *testing.T) {
	// logrotate's "create": the file is moved away, a new one is made, and
	// SIGHUP tells the gateway; the old file keeps the lines before.
	t.Run("logrotate create moves the file away", func(t *testing.T) {
		s, path := auditFileServer(t)
		requestPaths(t, s, "/before-1", "/before-2")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		requestPaths(t, s, "/between") // still goes to the moved file
		if err := s.Reopen(); err != nil {
			t.Fatal(err)
		}
		requestPaths(t, s, "/after-1", "/after-2")
		if got, want := strings.Join(auditPaths(t, path+".1"), " "), "/before-1 /before-2 /between"; got != want {
			t.Errorf("rotated file has %s, want %s", got, want)
		}
		if got, want := strings.Join(auditPaths(t, path), " "), "/after-1 /after-2"; got != want {
			t.Errorf("reopened file has %s, want %s", got, want)
		}
	})
	// logrotate's "copytruncate": the same file is emptied under the
	// gateway; the next lines must start it (O_APPEND), not follow a hole
	// of NULs where the old lines were.
	t.Run("logrotate copytruncate empties the file", func(t *testing.T) {
		s, path := auditFileServer(t)
		requestPaths(t, s, "/before-1", "/before-2")
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		requestPaths(t, s, "/after-1")
		if err := s.Reopen(); err != nil {
			t.Fatal(err)
		}
		requestPaths(t, s, "/after-2")
		if got, want := strings.Join(auditPaths(t, path), " "), "/after-1 /after-2"; got != want {
			t.Errorf("truncated file has %s, want %s", got, want)
		}
	})
	// The directory is gone (a broken rotation): Reopen says so and the
	// lines keep going to the file already open.
	t.Run("reopen failure keeps the old file", func(t *testing.T) {
		s, path := auditFileServer(t)
		moved := filepath.Dir(path) + ".moved"
		if err := os.Rename(filepath.Dir(path), moved); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(moved) })
		if err := s.Reopen(); err == nil || !strings.Contains(err.Error(), "still writing to the old one") {
			t.Fatalf("Reopen with the directory gone = %v, want an error", err)
		}
		requestPaths(t, s, "/after-failed-reopen")
		if got := auditPaths(t, filepath.Join(moved, "audit.log")); len(got) != 1 || got[0] != "/after-failed-reopen" {
			t.Errorf("old file has %q, want the line logged after the failed reopen", got)
		}
	})
	t.Run("stdout has nothing to reopen", func(t *testing.T) {
		s := newServer(t, testConfig(t, ""), nil, io.Discard)
		if err := s.Reopen(); err != nil {
			t.Fatalf("Reopen with audit.output stdout = %v", err)
		}
	})
}

func TestAuditOptionsFromConfig(t *testing.T) {
	c := testConfig(t, "audit: {output: stderr, on_failure: drop_and_count, max_pending: 65536}\n")
	stuck := &stuckOutput{release: make(chan struct{})}
	s := newServer(t, c, nil, stuck) // the first-start message goes through
	stuck.stuck.Store(true)
	t.Cleanup(func() { close(stuck.release) }) // before the server's Close
	// The output takes nothing: past 64 KiB the lines are dropped and
	// counted, and Log does not wait.
	for i := 0; i < 2000; i++ {
		s.audit.Log(&audit.Entry{Time: time.Unix(0, 0), RequestID: fmt.Sprint(i), Path: strings.Repeat("x", 100)})
	}
	if st := s.audit.Stats(); st.Dropped == 0 || st.PendingBytes > 65536 {
		t.Fatalf("Stats = %+v, want lines past audit.max_pending dropped (audit.on_failure: drop_and_count)", st)
	}
}

// stuckOutput blocks every write, once stuck, until release is closed.
type stuckOutput struct {
	stuck   atomic.Bool
	release chan struct{}
}

func (s *stuckOutput) Write(p []byte) (int, error) {
	if s.stuck.Load() {
		<-s.release
	}
	return len(p), nil
}

// fullDisk fails every write with ENOSPC until freed.
type fullDisk struct {
	mu   sync.Mutex
	free bool
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.free {
		return 0, &os.PathError{Op: "write", Path: "/var/log/secret-path/audit.log", Err: syscall.ENOSPC}
	}
	return len(p), nil
}

// A load balancer polls healthz: while the audit log cannot be written it
// must answer 503 so traffic moves to a replica that can record decisions,
// and the answer (public) must not tell the file's path or the cause.
func TestHealthzUnhealthyWhileAuditCannotBeWritten(t *testing.T) {
	disk := &fullDisk{}
	l := audit.NewWithOptions(disk, audit.Options{Logger: slog.New(slog.DiscardHandler), CloseTimeout: time.Millisecond})
	t.Cleanup(func() { l.Close() })
	s := &Server{audit: l}
	portal := &web.Portal{Health: s.auditHealth}
	healthz := func() (int, string) {
		rec := httptest.NewRecorder()
		portal.Serve(rec, httptest.NewRequest("GET", "/.sekisho/healthz", nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := healthz(); code != http.StatusOK || body != `{"status":"ok"}` {
		t.Fatalf("healthz before any failure = %d %s", code, body)
	}
	l.Log(&audit.Entry{RequestID: "r"})
	if err := l.Flush(); err == nil {
		t.Fatal("Flush on a full disk succeeded")
	}
	code, body := healthz()
	if code != http.StatusServiceUnavailable || body != `{"status":"unhealthy","reason":"audit log cannot be written"}` {
		t.Fatalf("healthz while the audit log fails = %d %s, want 503 unhealthy", code, body)
	}
	if err := s.auditHealth(); !errors.Is(err, audit.ErrUnhealthy) {
		t.Fatalf("auditHealth = %v", err)
	}
	disk.mu.Lock()
	disk.free = true
	disk.mu.Unlock()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(); code != http.StatusOK {
		t.Fatalf("healthz after recovery = %d %s", code, body)
	}
	rec := httptest.NewRecorder()
	(&web.Portal{}).Serve(rec, httptest.NewRequest("GET", "/.sekisho/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz with no Health func = %d, want 200", rec.Code)
	}
}
