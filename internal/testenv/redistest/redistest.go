// Package redistest starts a real redis-server on loopback for tests (the
// rate-limit store's and the gateway's), and stops it after.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a real redis-server started by a test on 127.0.0.1.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	once sync.Once
	log  *bytes.Buffer
}

// Stop kills the server and waits for it; safe to call twice.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
}

// binary finds redis-server: $SEKISHO_REDIS_SERVER, else PATH. Without
// it the test is skipped, or fails when CI is set.
func binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SEKISHO_REDIS_SERVER"); p != "" {
		return p
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found: install it (Debian: apt-get install -y redis-server) or set SEKISHO_REDIS_SERVER"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Start starts redis-server on a free loopback port, waits until it
// answers PING, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	var lastErr error
	for range 3 { // the free port may be taken between probing and binding
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: new(bytes.Buffer)}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir())
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { s.cmd.Process.Wait(); close(exited) }()
		if lastErr = waitPing(s.Addr, exited); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
		s.Stop()
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

func waitPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
