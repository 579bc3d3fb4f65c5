// Package pgtest starts a real PostgreSQL server on loopback for tests and
// hands each test a fresh, empty database on it.
//
// One server is started per test binary, on the first call to [Start], and
// stopped by [Main] when the package's tests end, so a package using Start
// must have
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// The server binaries (initdb, postgres) are found in $SEKISHO_PG_BINDIR,
// else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin.
// Without them the test is skipped, or fails when CI is set. initdb refuses
// to run as root, so under root the server runs as the "postgres" system
// user (or "nobody" if there is none).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// superuser is the role initdb creates; tests connect as it (trust auth on
// loopback only).
const superuser = "sekisho"

var (
	mainRunning atomic.Bool
	once        sync.Once
	shared      *server
	sharedErr   error
	skipMsg     string // set instead of sharedErr when the binaries are missing
	dbCounter   atomic.Int64
)

// Main runs the package's tests (m.Run) and then stops the server, if a
// test started one, and removes its files. Call it from TestMain.
func Main(m *testing.M) int {
	mainRunning.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Start returns the URL of a new, empty database on the shared server
// (postgres://sekisho@127.0.0.1:PORT/NAME?sslmode=disable), starting the
// server on first use. The database is dropped when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("pgtest.Start: the package must run its tests through pgtest.Main: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	once.Do(func() { shared, skipMsg, sharedErr = startServer() })
	skipUnlessCI(t, skipMsg)
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	name := fmt.Sprintf("sekisho_test_%d", dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := shared.admin(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends any connection a test left open.
		if err := shared.admin(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return shared.url(name)
}

type server struct {
	dir    string // owns data/ and the unix socket; removed by stop
	bin    string // the server binaries
	data   string // the data directory
	cred   *syscall.Credential
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer // initdb's and the server's output, for errors
	mu     sync.Mutex    // guards log writes from two pipes
}

func (s *server) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(superuser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (s *server) admin(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// Write collects output from both of the server's pipes.
func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.log.String())
}

// stop asks the server for a fast shutdown, kills it if that takes too
// long, and removes its files.
func (s *server) stop() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
			err = errors.New("postgres did not shut down within 30s; killed it")
		}
	}
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// bindir finds the directory holding initdb and postgres, or returns "".
func bindir() string {
	has := func(d string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("SEKISHO_PG_BINDIR"); d != "" {
		return d // checked by the caller, so a wrong setting is an error, not a skip
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d
		}
	}
	ds, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(ds, func(i, j int) bool { return pgMajor(ds[i]) > pgMajor(ds[j]) })
	for _, d := range ds {
		if has(d) {
			return d
		}
	}
	return ""
}

func pgMajor(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// runAs returns the credentials to run the server with: none when not
// root, else the postgres (or nobody) user, since initdb refuses root.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New(`running as root and there is no "postgres" or "nobody" user to run initdb as (initdb refuses root): create one, e.g. useradd --system postgres`)
}

// startServer runs initdb into a new temporary directory and starts
// postgres on a free loopback port. It returns a skip message instead when
// the binaries are missing.
func startServer() (*server, string, error) { return startServerOn(0) }

// startServerOn is startServer on the given port (0: a free one).
func startServerOn(port int) (*server, string, error) {
	bin := bindir()
	if bin == "" {
		return nil, "PostgreSQL server binaries (initdb, postgres) not found: install them (Debian: apt-get install -y postgresql) or set SEKISHO_PG_BINDIR", nil
	}
	cred, err := runAs()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "sekisho-pgtest-")
	if err != nil {
		return nil, "", err
	}
	s := &server{dir: dir, log: new(bytes.Buffer)}
	fail := func(err error) (*server, string, error) {
		s.stop()
		if out := s.output(); out != "" {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		return nil, "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("chown %s to the server's user: %w", dir, err))
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser,
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir, initdb.Stdout, initdb.Stderr = dir, s, s
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := initdb.Run(); err != nil {
		return fail(fmt.Errorf("%s: %w", initdb, err))
	}
	s.bin, s.data, s.cred = bin, data, cred
	var lastErr error
	for range 3 { // the free port may be taken between probing and binding
		if port == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fail(err)
			}
			s.port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		} else {
			s.port = port
		}
		if lastErr = s.launch(); lastErr == nil {
			return s, "", nil
		}
	}
	return fail(fmt.Errorf("postgres did not start: %w", lastErr))
}

// launch starts the postgres process on s.port over s.data and waits for
// it to take connections.
func (s *server) launch() error {
	bin, data, dir, cred := s.bin, s.data, s.dir, s.cred
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		// Throwaway data: trade durability for speed.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	s.cmd.Dir, s.cmd.Stdout, s.cmd.Stderr = dir, s, s
	// Pdeathsig: a test binary that dies (panic, -timeout) takes the
	// server with it instead of leaving it running.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("start postgres: %w", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	if err := s.waitReady(); err != nil {
		s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
		return err
	}
	return nil
}

// skipUnlessCI skips the test with msg (the server binaries are missing),
// or fails it under CI, where they must be. An empty msg does nothing.
func skipUnlessCI(t testing.TB, msg string) {
	t.Helper()
	if msg == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Instance is a Postgres server of a test's own, which the test may stop
// and start again (an outage) without touching other tests' databases.
type Instance struct {
	s *server
	t testing.TB
}

// StartOwn starts a server for this test alone, with one empty database,
// and stops it when the test ends. It skips (or fails under CI) as Start
// does when the server binaries are missing.
func StartOwn(t testing.TB) *Instance {
	t.Helper()
	s, skip, err := startServer()
	skipUnlessCI(t, skip)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.admin(ctx, "CREATE DATABASE sekisho_own"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return &Instance{s: s, t: t}
}

// URL is the database's URL.
func (i *Instance) URL() string { return i.s.url("sekisho_own") }

// Stop shuts the server down (fast shutdown: open connections are cut)
// and waits until it is gone.
func (i *Instance) Stop() {
	i.t.Helper()
	if i.s.cmd == nil {
		return
	}
	i.s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-i.s.exited:
	case <-time.After(30 * time.Second):
		i.s.cmd.Process.Kill()
		<-i.s.exited
	}
	i.s.cmd = nil
}

// Restart starts the stopped server again on the same port and data.
func (i *Instance) Restart() {
	i.t.Helper()
	if err := i.s.launch(); err != nil {
		i.t.Fatalf("pgtest: restart: %v\n%s", err, i.s.output())
	}
}

func (s *server) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
