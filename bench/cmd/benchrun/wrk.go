package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what the harness reads from wrk's report.
type wrkResult struct {
	RPS      float64
	P50, P99 time.Duration
	Requests int64
	Non2xx   int64
	Errors   int64 // socket errors: connect, read, write, timeout
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reReqs    = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

// runWrk runs wrk -t2 -cCONNS -dDUR --latency against url, with the
// session cookie when cookie is not empty.
func runWrk(url, cookie string, conns int, dur time.Duration) (wrkResult, string, error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(dur.Round(time.Second)/time.Second)), "--latency"}
	if cookie != "" {
		args = append(args, "-H", "Cookie: sekisho="+cookie)
	}
	args = append(args, url)
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk: %w: %s", err, out)
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := reReqs.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		d := parseWrkDuration(m[2], m[3])
		switch m[1] {
		case "50":
			r.P50 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P99 == 0 {
		return r, fmt.Errorf("no 99%% latency in wrk output (was --latency given?):\n%s", out)
	}
	return r, nil
}

func parseWrkDuration(num, unit string) time.Duration {
	f, _ := strconv.ParseFloat(num, 64)
	switch strings.ToLower(unit) {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	default:
		return time.Duration(f * float64(time.Second))
	}
}
