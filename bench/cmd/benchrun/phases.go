package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func execLookPath(name string) (string, error) { return exec.LookPath(name) }

// sysCalls is the number of read-like and write-like system calls the
// process has made (syscr + syscw in /proc/PID/io).
func sysCalls(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "syscr" || k == "syscw") {
			x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/io: %s: %w", pid, k, err)
			}
			n += x
		}
	}
	return n, nil
}

// cpuTime is the CPU time a process has used so far: the sum of its
// threads' schedstat run times (nanoseconds), or, where schedstat is
// missing, utime+stime from /proc/PID/stat (in 10 ms ticks).
func cpuTime(pid int) (time.Duration, error) {
	if tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid)); err == nil && len(tasks) > 0 {
		var sum int64
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue // a thread that just ended
			}
			f := strings.Fields(string(b))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				sum += n
			}
		}
		if sum > 0 {
			return time.Duration(sum), nil
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: count
	// fields after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(u+st) * time.Second / clkTck, nil
}

// countDecisions counts the audit log's lines by their decision field.
func countDecisions(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	key := []byte(`"decision":"`)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, key)
		if i < 0 {
			counts["?"]++
			continue
		}
		rest := line[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			counts[string(rest[:j])]++
		}
	}
	return counts, sc.Err()
}

// sseResult is one proxy's memory while holding the streams.
type sseResult struct {
	name      string
	idle      memStatus
	partRSS   int64 // VmRSS with the first fifth of the streams open
	peakRSS   int64 // highest VmRSS sampled with all streams open
	hwm       int64 // VmHWM at the end
	openTime  time.Duration
	perStream float64 // KiB: (peakRSS - idle RSS) / streams
	marginal  float64 // KiB: (peakRSS - partRSS) / the streams opened after the first fifth
}

func sse(out io.Writer, o options, dir, bareBin, upAddr string, gw *gateway, cookie string) error {
	var results []sseResult
	// (b) first, as the baseline: a fresh bare proxy.
	{
		bare, addr, err := start("bareproxy", filepath.Join(dir, "bareproxy-sse.log"), true, bareBin, "-target", "http://"+upAddr)
		if err != nil {
			return err
		}
		r, err := holdStreams(o, "(b) bare httputil.ReverseProxy", bare, addr, "")
		bare.stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	{
		sk, err := gw.serve("sekisho-sse.log")
		if err != nil {
			return err
		}
		if err := gw.checkThrough(cookie); err != nil {
			sk.stop()
			return err
		}
		r, err := holdStreams(o, "(c) sekisho, session cookie", sk, gw.addr, cookie)
		sk.stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	part := o.streams / 5
	fmt.Fprintf(out, "## Idle SSE streams: %d held open for %s through a fresh process of each proxy\n\n", o.streams, o.sseHold)
	fmt.Fprintf(out, "| proxy | time to open all | VmRSS before | with %d streams | with %d streams (peak) | VmHWM | **RSS per stream** | marginal per stream |\n|---|---|---|---|---|---|---|---|\n", part, o.streams)
	for _, r := range results {
		fmt.Fprintf(out, "| %s | %.1f s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | **%.1f KiB** | %.1f KiB |\n",
			r.name, r.openTime.Seconds(), mib(r.idle.RSS), mib(r.partRSS), mib(r.peakRSS), mib(r.hwm), r.perStream, r.marginal)
	}
	b, c := results[0], results[1]
	fmt.Fprintf(out, "\n- **sekisho: %.1f KiB per stream** (target < 64 KiB: %s), marginal %.1f KiB (%s); (c)/(b) = %.2f\n",
		c.perStream, passFail(c.perStream < 64), c.marginal, passFail(c.marginal < 64), c.perStream/b.perStream)
	fmt.Fprintf(out, "- RSS per stream = (peak VmRSS with the streams open - VmRSS before) / %d; marginal = (peak VmRSS - VmRSS with %d open) / %d, which leaves out memory the process had already touched and freed before (a heap the streams can reuse without growing RSS); each stream is an upstream connection too\n\n", o.streams, part, o.streams-part)
	return nil
}

func holdStreams(o options, name string, p *child, addr, cookie string) (sseResult, error) {
	r := sseResult{name: name}
	// One stream first, so the proxy's upstream transport and request path
	// are in memory, then let it settle.
	first, err := openStreams(addr, "/sse", cookie, 1, 1)
	if err != nil {
		return r, fmt.Errorf("%s: first stream: %w", name, err)
	}
	closeAll(first)
	time.Sleep(time.Second)
	idle, err := readMem(p.pid())
	if err != nil {
		return r, err
	}
	r.idle = idle
	part := o.streams / 5
	logf("%s: opening %d + %d SSE streams (VmRSS before: %.1f MiB)", name, part, o.streams-part, mib(idle.RSS))
	t0 := time.Now()
	conns, err := openStreams(addr, "/sse", cookie, part, 32)
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	defer func() { closeAll(conns) }()
	open := time.Since(t0)
	time.Sleep(time.Second)
	m, err := readMem(p.pid())
	if err != nil {
		return r, err
	}
	r.partRSS = m.RSS
	t0 = time.Now()
	rest, err := openStreams(addr, "/sse", cookie, o.streams-part, 32)
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	conns = append(conns, rest...)
	r.openTime = open + time.Since(t0)
	for end := time.Now().Add(o.sseHold); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		m, err := readMem(p.pid())
		if err != nil {
			return r, err
		}
		r.peakRSS = max(r.peakRSS, m.RSS)
		r.hwm = m.HWM
	}
	r.perStream = float64(r.peakRSS-idle.RSS) / 1024 / float64(o.streams)
	r.marginal = float64(r.peakRSS-r.partRSS) / 1024 / float64(o.streams-part)
	logf("%s: %.1f KiB per stream, marginal %.1f KiB", name, r.perStream, r.marginal)
	return r, nil
}

// startResult is one cold start.
type startResult struct {
	wall time.Duration // exec to the first 200
	cpu  time.Duration // CPU the process used until then
	mem  memStatus     // one second later
}

// coldStart runs bin and returns the time from exec to the first 200 on
// addr+path (polled every millisecond), the CPU time the process had used
// by then, and its memory one second later.
func coldStart(logPath, addr, path, bin string, args ...string) (startResult, error) {
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
	var r startResult
	t0 := time.Now()
	c, _, err := start(filepath.Base(bin), logPath, false, bin, args...)
	if err != nil {
		return r, err
	}
	defer c.stop()
	deadline := t0.Add(20 * time.Second)
	for !healthzOK(addr, req) {
		select {
		case <-c.done:
			return r, fmt.Errorf("%s exited during start-up: %v (log: %s)", bin, c.err, logPath)
		default:
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s did not answer 200 on %s 20 s after exec (log: %s)", bin, path, logPath)
		}
		time.Sleep(time.Millisecond)
	}
	r.wall = time.Since(t0)
	r.cpu, _ = cpuTime(c.pid())
	time.Sleep(time.Second)
	r.mem, err = readMem(c.pid())
	return r, err
}

func healthzOK(addr string, req []byte) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(req); err != nil {
		return false
	}
	status, _, err := readResponse(bufio.NewReaderSize(c, 4096))
	return err == nil && status == 200
}

func startup(out io.Writer, o options, gw *gateway, bareBin, upAddr string) error {
	bareAddr, err := freeAddr()
	if err != nil {
		return err
	}
	var sk, bare []startResult
	for i := range o.coldStarts {
		// Alternate, so both see the same background.
		r, err := coldStart(filepath.Join(gw.dir, fmt.Sprintf("sekisho-cold-%d.log", i)), gw.addr, "/.sekisho/healthz", gw.bin, "serve", "--config", gw.config)
		if err != nil {
			return err
		}
		sk = append(sk, r)
		b, err := coldStart(filepath.Join(gw.dir, fmt.Sprintf("bareproxy-cold-%d.log", i)), bareAddr, "/", bareBin, "-addr", bareAddr, "-target", "http://"+upAddr)
		if err != nil {
			return err
		}
		bare = append(bare, b)
		logf("cold start %d: sekisho %.1f ms (idle VmRSS %.1f MiB), bare proxy %.1f ms", i+1, float64(r.wall)/1e6, mib(r.mem.RSS), float64(b.wall)/1e6)
	}
	// A first start ever: empty data directory, so keys are generated and
	// the database is created.
	fresh := *gw
	fresh.dir = filepath.Join(gw.dir, "fresh")
	fresh.config = filepath.Join(fresh.dir, "sekisho.yaml")
	if err := os.MkdirAll(fresh.dir, 0o700); err != nil {
		return err
	}
	cfg, err := os.ReadFile(gw.config)
	if err != nil {
		return err
	}
	cfg = bytes.Replace(cfg, []byte(filepath.Join(gw.dir, "data")), []byte(filepath.Join(fresh.dir, "data")), 1)
	cfg = bytes.Replace(cfg, []byte(gw.audit), []byte(filepath.Join(fresh.dir, "audit.log")), 1)
	if err := os.WriteFile(fresh.config, cfg, 0o600); err != nil {
		return err
	}
	first, err := coldStart(filepath.Join(fresh.dir, "sekisho-first.log"), gw.addr, "/.sekisho/healthz", gw.bin, "serve", "--config", fresh.config)
	if err != nil {
		return err
	}

	type fig struct {
		name   string
		get    func(startResult) float64
		unit   string
		target string
		ok     func(float64) bool
	}
	figs := []fig{
		{"exec to first 200 (wall)", func(r startResult) float64 { return float64(r.wall) / 1e6 }, "ms", "< 150 ms", func(v float64) bool { return v < 150 }},
		{"CPU time used until then", func(r startResult) float64 { return float64(r.cpu) / 1e6 }, "ms", "", nil},
		{"idle VmRSS 1 s later", func(r startResult) float64 { return mib(r.mem.RSS) }, "MiB", "< 40 MiB", func(v float64) bool { return v < 40 }},
		{"of which anonymous (heap, stacks)", func(r startResult) float64 { return mib(r.mem.Anon) }, "MiB", "", nil},
		{"of which file-backed (the binary's pages)", func(r startResult) float64 { return mib(r.mem.File) }, "MiB", "", nil},
	}
	median := func(rs []startResult, get func(startResult) float64) (float64, string) {
		var vs []float64
		var ss []string
		for _, r := range rs {
			vs = append(vs, get(r))
			ss = append(ss, fmt.Sprintf("%.1f", get(r)))
		}
		slices.Sort(vs)
		return vs[len(vs)/2], strings.Join(ss, ", ")
	}
	fmt.Fprintf(out, "## Start-up: exec to the first 200 (sekisho: /.sekisho/healthz; bare proxy: a proxied /), polled every 1 ms, %d runs each, alternating\n\n", o.coldStarts)
	fmt.Fprintf(out, "| figure | sekisho runs | **sekisho median** | bare proxy runs | bare proxy median | sekisho / bare | target |\n|---|---|---|---|---|---|---|\n")
	for _, f := range figs {
		sm, sr := median(sk, f.get)
		bm, br := median(bare, f.get)
		verdict := ""
		if f.ok != nil {
			verdict = f.target + ": " + passFail(f.ok(sm))
		}
		ratio := "—"
		if bm > 0 {
			ratio = fmt.Sprintf("%.1f", sm/bm)
		}
		fmt.Fprintf(out, "| %s | %s %s | **%.1f %s** | %s %s | %.1f %s | %s | %s |\n", f.name, sr, f.unit, sm, f.unit, br, f.unit, bm, f.unit, ratio, verdict)
	}
	fmt.Fprintf(out, "| first start ever (empty data dir: keys, database, the admin account's argon2id hash) | %.1f ms, CPU %.1f ms, then %.1f MiB | | | | | for information |\n\n",
		float64(first.wall)/1e6, float64(first.cpu)/1e6, mib(first.mem.RSS))
	return nil
}

// perfTrailer is the empty columns perf report pads its lines with.
var perfTrailer = regexp.MustCompile(`(\s+-)*\s*$`)

// interesting keeps, of the cumulative profile, sekisho's own functions and
// the library work its request path adds to a bare proxy's.
func interesting(line string) bool {
	for _, s := range []string{"sekisho/", "crypto/", "encoding/json", "slog", "mallocgc", "gcBgMarkWorker", "ReverseProxy).ServeHTTP", "(*conn).serve", "Transport).roundTrip", "(*response).finishRequest", "syscall.Syscall"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// profile samples sekisho's stacks with perf(1) while wrk saturates it and
// prints the functions with the most samples, self and cumulative.
func profile(out io.Writer, o options, dir string, t target) error {
	if _, err := exec.LookPath("perf"); err != nil {
		return fmt.Errorf("-perf needs perf(1) (Debian: linux-perf): %w", err)
	}
	data := filepath.Join(dir, "perf.data")
	logf("profiling %s with perf for %s", t.name, o.duration)
	wrkDone := make(chan error, 1)
	go func() {
		_, _, err := runWrk("http://"+t.addr+"/", t.cookie, o.conns, o.duration+2*time.Second)
		wrkDone <- err
	}()
	time.Sleep(time.Second)
	rec := exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(t.proc.pid()), "-o", data,
		"--", "sleep", strconv.Itoa(int(o.duration/time.Second)))
	if b, err := rec.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %v: %s", err, b)
	}
	if err := <-wrkDone; err != nil {
		return err
	}
	fmt.Fprintf(out, "## perf profile of sekisho under saturation (%s, 999 Hz)\n\n", o.duration)
	for _, v := range []struct{ title, flag, limit string }{
		{"self", "--no-children", "0.7"},
		{"cumulative (callee time included)", "--children", "3"},
	} {
		rep := exec.Command("perf", "report", "-i", data, "--stdio", v.flag, "--sort", "symbol", "--percent-limit", v.limit, "-g", "none")
		b, err := rep.Output()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		fmt.Fprintf(out, "%s:\n\n```\n", v.title)
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if v.flag == "--children" && !interesting(line) {
				continue
			}
			fmt.Fprintln(out, perfTrailer.ReplaceAllString(strings.TrimRight(line, "\n"), ""))
		}
		fmt.Fprintf(out, "```\n\n")
	}
	return nil
}

// cpuStat is the machine's CPU time from /proc/stat's first line, in clock
// ticks: steal is time the hypervisor gave this virtual machine's CPUs to
// someone else; total is every field summed.
type cpuStat struct{ steal, total int64 }

func readCPUStat() cpuStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuStat{}
	}
	var s cpuStat
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		s.total += n
		if i == 7 {
			s.steal = n
		}
	}
	return s
}

// stealPercent is the share of CPU time stolen between a and b, "?" when
// /proc/stat could not tell.
func stealPercent(a, b cpuStat) string {
	if b.total <= a.total {
		return "?"
	}
	return fmt.Sprintf("%.0f %%", 100*float64(b.steal-a.steal)/float64(b.total-a.total))
}
