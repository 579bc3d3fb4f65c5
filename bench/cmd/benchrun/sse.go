package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// openStreams opens n Server-Sent Events streams to addr+path with raw
// HTTP/1.1 over net.Dial (a goroutine and a few KiB per stream would be the
// harness's own cost, not sekisho's: each stream here is only its socket
// once it is open). A stream counts as open when the response is 200 and
// the upstream's first comment (": open") came through, proving that the
// stream reached the upstream and is flowing back unbuffered.
func openStreams(addr, path, cookie string, n, parallel int) ([]net.Conn, error) {
	req := rawRequest(addr, path, cookie)
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			br := bufio.NewReaderSize(nil, 1024)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := openStream(addr, req, br)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("stream %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func openStream(addr string, req []byte, br *bufio.Reader) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	br.Reset(c)
	line, err := br.ReadSlice('\n')
	if err != nil || !bytes.Contains(line, []byte(" 200 ")) {
		c.Close()
		return nil, fmt.Errorf("response %q, %v", line, err)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if bytes.Contains(line, []byte(": open")) {
			break
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
