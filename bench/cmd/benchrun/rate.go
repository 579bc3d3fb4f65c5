package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// rawRequest is a keep-alive HTTP/1.1 GET, as wrk sends it.
func rawRequest(addr, path, cookie string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, addr)
	if cookie != "" {
		fmt.Fprintf(&b, "Cookie: sekisho=%s\r\n", cookie)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// readResponse reads one HTTP/1.1 response from br and discards its body.
// It returns the status code and whether the server will close the
// connection. Bodies with Content-Length and chunked bodies are understood;
// that is all the benchmark's upstream produces.
func readResponse(br *bufio.Reader) (status int, closing bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
			n, err := strconv.ParseInt(string(size), 16, 64)
			if err != nil {
				return 0, false, fmt.Errorf("bad chunk size %q", line)
			}
			if _, err := br.Discard(int(n) + 2); err != nil {
				return 0, false, err
			}
			if n == 0 {
				break
			}
		}
	case length > 0:
		if _, err := br.Discard(int(length)); err != nil {
			return 0, false, err
		}
	case length < 0 && status != 204 && status != 304:
		return status, true, errors.New("response without a length: read to the end")
	}
	return status, closing, nil
}

// rateResult is one fixed-rate phase.
type rateResult struct {
	Target   float64 // requests/s asked for
	Achieved float64 // requests completed / duration of the phase
	OK, Bad  int     // 200 responses; anything else (other status, errors)
	Late     int     // requests that found no free connection at their due time
	P50, P90 time.Duration
	P99      time.Duration
	P999     time.Duration
	Max      time.Duration
	lat      []time.Duration
}

// runRate is an open-loop load generator: request i is due at
// start + i/rate, whether earlier requests have finished or not, for dur.
// conns keep-alive connections carry the requests; a request whose due time
// passes while every connection is busy is sent as soon as one frees up and
// its latency counts from its due time (no coordinated omission). A request
// sent on time counts from the moment it was sent, so the generator's own
// timer slack (a sleeping goroutine wakes a little late) is not charged to
// the server.
func runRate(addr, path, cookie string, rate float64, dur time.Duration, conns int) (rateResult, error) {
	total := int(rate * dur.Seconds())
	if total < 1 {
		return rateResult{}, fmt.Errorf("rate %.0f/s for %s is no request at all", rate, dur)
	}
	interval := float64(time.Second) / rate
	req := rawRequest(addr, path, cookie)
	lat := make([]time.Duration, total)
	for i := range lat {
		lat[i] = -1
	}
	var next atomic.Int64
	var late, bad atomic.Int64
	hardStop := time.Now().Add(dur + 10*time.Second)

	// Dial first so the phase measures requests, not handshakes.
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return rateResult{}, err
		}
		cs[i] = c
	}
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			br := bufio.NewReaderSize(c, 16<<10)
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				due := start.Add(time.Duration(float64(i) * interval))
				var from time.Time
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
					from = time.Now()
				} else {
					from = due
					if wait < -time.Millisecond {
						late.Add(1)
					}
				}
				if time.Now().After(hardStop) {
					bad.Add(1)
					continue
				}
				status, closing, err := roundTrip(&c, &br, addr, req, hardStop)
				if err != nil || status != 200 {
					bad.Add(1)
					continue
				}
				lat[i] = time.Since(from)
				if closing {
					c.Close()
					c = nil
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := lat[:0:0]
	for _, d := range lat {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	r := rateResult{Target: rate, OK: len(ok), Bad: int(bad.Load()), Late: int(late.Load()), lat: ok}
	r.Achieved = float64(len(ok)) / elapsed.Seconds()
	r.percentiles()
	return r, nil
}

func (r *rateResult) percentiles() {
	slices.Sort(r.lat)
	r.P50, r.P90, r.P99, r.P999 = pct(r.lat, 50), pct(r.lat, 90), pct(r.lat, 99), pct(r.lat, 99.9)
	if len(r.lat) > 0 {
		r.Max = r.lat[len(r.lat)-1]
	}
}

// merge pools the samples of several phases against the same target.
func merge(rs ...rateResult) rateResult {
	var m rateResult
	for _, r := range rs {
		m.Target += r.Target / float64(len(rs))
		m.Achieved += r.Achieved / float64(len(rs))
		m.OK += r.OK
		m.Bad += r.Bad
		m.Late += r.Late
		m.lat = append(m.lat, r.lat...)
	}
	m.percentiles()
	return m
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// roundTrip sends req on *c (dialling again if it was closed) and reads the
// response.
func roundTrip(c *net.Conn, br **bufio.Reader, addr string, req []byte, deadline time.Time) (int, bool, error) {
	for attempt := 0; ; attempt++ {
		if *c == nil {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return 0, false, err
			}
			*c = nc
			(*br).Reset(nc)
		}
		(*c).SetDeadline(deadline)
		_, err := (*c).Write(req)
		var status int
		var closing bool
		if err == nil {
			status, closing, err = readResponse(*br)
		}
		if err == nil {
			return status, closing, nil
		}
		(*c).Close()
		*c = nil
		// A keep-alive connection the server closed while idle: try once
		// more on a fresh one, as HTTP clients do.
		if attempt > 0 || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
			return 0, false, err
		}
	}
}
