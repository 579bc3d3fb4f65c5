// Command benchrun measures sekisho against a bare Go reverse proxy and the
// upstream itself, side by side in one run on loopback, and prints the
// figures bench/README.md reports:
//
//   - saturation (wrk -t2 -c64 --latency): (a) direct to the upstream,
//     (b) a bare httputil.ReverseProxy, (c) sekisho with a session cookie on
//     every request, and for information (d) the bare proxy over sekisho's
//     upstream pool; requests/s, p99 and the proxies' CPU time per request;
//   - latency at a fixed rate, half of (b)'s saturation, open loop, for (b)
//     and (c);
//   - idle Server-Sent Events streams held open through each proxy: resident
//     memory per stream;
//   - cold start (exec to the first 200 on /.sekisho/healthz) and idle RSS.
//
// Run it from the repository: go run ./bench/cmd/benchrun. It needs wrk.
// Every figure is compared with a baseline measured in the same run, so
// the ratios survive a noisy machine better than the absolute numbers do.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration   time.Duration
	conns      int
	rounds     int
	streams    int
	sseHold    time.Duration
	coldStarts int
	slice      time.Duration
	phases     map[string]bool
	perf       bool
	pprof      bool
	keep       bool
}

func main() {
	var o options
	var phases string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each load phase")
	flag.IntVar(&o.conns, "conns", 64, "connections of each load phase (wrk -c)")
	flag.IntVar(&o.rounds, "rounds", 2, "saturation rounds over (a), (b), (c); even rounds run in reverse order")
	flag.IntVar(&o.streams, "streams", 5000, "idle SSE streams held open through each proxy")
	flag.DurationVar(&o.sseHold, "sse-hold", 5*time.Second, "how long the SSE streams are held open while RSS is sampled")
	flag.DurationVar(&o.slice, "slice", 250*time.Millisecond, "fixed-rate phase: length of each alternating slice of (b) and (c)")
	flag.IntVar(&o.coldStarts, "coldstarts", 5, "cold start runs (the median is reported)")
	flag.StringVar(&phases, "phases", "saturation,rate,sse,start", "phases to run, comma-separated")
	flag.BoolVar(&o.perf, "perf", false, "after the other phases, profile sekisho under saturation with perf(1) and print its hottest functions")
	flag.BoolVar(&o.pprof, "pprof", false, "after the other load phases, run sekisho built with net/http/pprof (bench/cmd/sekisho-pprof) and print CPU, allocation and SSE heap profiles")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, logs, audit log, perf data)")
	flag.Parse()
	o.phases = map[string]bool{}
	for p := range strings.SplitSeq(phases, ",") {
		o.phases[strings.TrimSpace(p)] = true
	}

	dir, err := os.MkdirTemp("", "sekisho-bench-")
	if err != nil {
		fatal(err)
	}
	cleanup := func() {
		stopAll()
		if o.keep {
			fmt.Fprintf(os.Stderr, "benchrun: kept %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "benchrun: %v: stopping\n", s)
		cleanup()
		os.Exit(1)
	}()
	err = run(o, dir)
	cleanup()
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
	os.Exit(1)
}

// logf reports progress on stderr; the figures go to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
}

func run(o options, dir string) error {
	// Children inherit the limit: sekisho holds two sockets per stream.
	lim := syscall.Rlimit{Cur: 0, Max: 0}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if need := uint64(2*o.streams + 1000); o.phases["sse"] && lim.Cur < need {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d that %d streams need (ulimit -Hn)", lim.Cur, need, o.streams)
	}
	if o.phases["saturation"] || o.phases["rate"] || o.perf || o.pprof {
		if _, err := execLookPath("wrk"); err != nil {
			return fmt.Errorf("wrk is needed (Debian: apt-get install wrk): %w", err)
		}
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	logf("building into %s", dir)
	bins := map[string]string{}
	pkgs := []string{"cmd/sekisho", "bench/cmd/upstream", "bench/cmd/bareproxy"}
	if o.pprof {
		pkgs = append(pkgs, "bench/cmd/sekisho-pprof")
	}
	for _, pkg := range pkgs {
		b, err := build(root, dir, pkg)
		if err != nil {
			return err
		}
		bins[filepath.Base(pkg)] = b
	}

	out := io.Writer(os.Stdout)
	fmt.Fprintf(out, "# sekisho benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(out, "%s %s/%s, %d CPUs, load average at start: %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadavg())
	fmt.Fprintf(out, "command: go run ./bench/cmd/benchrun %s\n\n", strings.Join(os.Args[1:], " "))

	up, upAddr, err := start("upstream", filepath.Join(dir, "upstream.log"), true, bins["upstream"])
	if err != nil {
		return err
	}
	bare, bareAddr, err := start("bareproxy", filepath.Join(dir, "bareproxy.log"), true, bins["bareproxy"], "-target", "http://"+upAddr)
	if err != nil {
		return err
	}
	bareH1, bareH1Addr, err := start("bareproxy-h1", filepath.Join(dir, "bareproxy-h1.log"), true, bins["bareproxy"], "-h1", "-target", "http://"+upAddr)
	if err != nil {
		return err
	}
	gw, err := newGateway(bins["sekisho"], dir, upAddr)
	if err != nil {
		return err
	}
	sk, err := gw.serve("sekisho-load.log")
	if err != nil {
		return err
	}
	cookie, err := gw.signIn()
	if err != nil {
		return err
	}
	if err := gw.checkThrough(cookie); err != nil {
		return err
	}
	logf("signed in; session cookie is %d bytes", len(cookie))

	targets := []target{
		{key: "a", name: "(a) direct to the upstream", addr: upAddr},
		{key: "b", name: "(b) bare httputil.ReverseProxy", addr: bareAddr, proc: bare},
		{key: "c", name: "(c) sekisho, session cookie", addr: gw.addr, proc: sk, cookie: cookie},
		{key: "d", name: "(d) bare ReverseProxy over sekisho's pool", addr: bareH1Addr, proc: bareH1},
	}
	var bSat float64
	if o.phases["saturation"] {
		if bSat, err = saturation(out, o, targets, up); err != nil {
			return err
		}
	}
	if o.phases["rate"] {
		if bSat == 0 {
			logf("measuring (b)'s saturation for the fixed-rate phase")
			r, _, err := runWrk("http://"+bareAddr+"/", "", o.conns, o.duration)
			if err != nil {
				return err
			}
			bSat = r.RPS
		}
		if err := fixedRate(out, o, targets[1:3], bSat/2); err != nil {
			return err
		}
	}
	if o.phases["saturation"] || o.phases["rate"] {
		if err := auditCheck(out, gw.audit); err != nil {
			return err
		}
	}
	if o.perf {
		if err := profile(out, o, dir, targets[2]); err != nil {
			return err
		}
	}
	sk.stop()
	if o.pprof {
		if err := pprofPhase(out, o, dir, bins["sekisho-pprof"], bins["bareproxy"], upAddr, gw, cookie); err != nil {
			return err
		}
	}
	bare.stop()
	bareH1.stop()

	if o.phases["sse"] {
		if err := sse(out, o, dir, bins["bareproxy"], upAddr, gw, cookie); err != nil {
			return err
		}
	}
	if o.phases["start"] {
		if err := startup(out, o, gw, bins["bareproxy"], upAddr); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "load average at end: %s\n", loadavg())
	return nil
}

// target is one of (a), (b), (c), (d).
type target struct {
	key, name, addr, cookie string
	proc                    *child // nil for the upstream: its CPU is not the proxy's
}

// saturation runs wrk against each target; up is the upstream process,
// whose CPU per request shows what each target's requests cost the app
// (sekisho's carry identity headers and a signed assertion).
func saturation(out io.Writer, o options, targets []target, up *child) (bSat float64, err error) {
	logf("warming up each target for 2s")
	for _, t := range targets {
		if _, _, err := runWrk("http://"+t.addr+"/", t.cookie, o.conns, 2*time.Second); err != nil {
			return 0, err
		}
	}
	type sample struct {
		wrkResult
		cpuPerReq time.Duration
		sysPerReq float64
		upPerReq  time.Duration
	}
	results := map[string][]sample{}
	var order []string
	steal0 := readCPUStat()
	for round := range o.rounds {
		ts := slices.Clone(targets)
		if round%2 == 1 {
			slices.Reverse(ts)
		}
		for _, t := range ts {
			order = append(order, t.key)
			logf("saturation round %d: %s", round+1, t.name)
			var cpu0 time.Duration
			var sys0 int64
			up0, _ := cpuTime(up.pid())
			if t.proc != nil {
				cpu0, _ = cpuTime(t.proc.pid())
				sys0, _ = sysCalls(t.proc.pid())
			}
			r, raw, err := runWrk("http://"+t.addr+"/", t.cookie, o.conns, o.duration)
			if err != nil {
				return 0, err
			}
			if r.Non2xx > 0 || r.Errors > 0 {
				return 0, fmt.Errorf("%s: %d non-2xx responses, %d socket errors:\n%s", t.name, r.Non2xx, r.Errors, raw)
			}
			s := sample{wrkResult: r}
			up1, _ := cpuTime(up.pid())
			s.upPerReq = (up1 - up0) / time.Duration(max(r.Requests, 1))
			if t.proc != nil {
				cpu1, _ := cpuTime(t.proc.pid())
				s.cpuPerReq = (cpu1 - cpu0) / time.Duration(max(r.Requests, 1))
				sys1, _ := sysCalls(t.proc.pid())
				s.sysPerReq = float64(sys1-sys0) / float64(max(r.Requests, 1))
			}
			results[t.key] = append(results[t.key], s)
		}
	}
	fmt.Fprintf(out, "## Saturation: wrk -t2 -c%d -d%s --latency, %d rounds in the order %s\n\n", o.conns, o.duration, o.rounds, strings.Join(order, " "))
	fmt.Fprintf(out, "| target | requests/s per run | mean requests/s | p50 (mean) | p99 (mean) | proxy CPU per request | proxy syscalls per request | upstream CPU per request |\n|---|---|---|---|---|---|---|---|\n")
	means := map[string]float64{}
	cpus := map[string]time.Duration{}
	for _, t := range targets {
		var runs []string
		var rps float64
		var p50, p99, cpu, upCPU time.Duration
		var sys float64
		ss := results[t.key]
		for _, s := range ss {
			runs = append(runs, fmt.Sprintf("%.0f", s.RPS))
			rps += s.RPS / float64(len(ss))
			p50 += s.P50 / time.Duration(len(ss))
			p99 += s.P99 / time.Duration(len(ss))
			cpu += s.cpuPerReq / time.Duration(len(ss))
			upCPU += s.upPerReq / time.Duration(len(ss))
			sys += s.sysPerReq / float64(len(ss))
		}
		means[t.key], cpus[t.key] = rps, cpu
		cpuCol, sysCol := "—", "—"
		if t.proc != nil {
			cpuCol, sysCol = fmt.Sprintf("%.1f µs", float64(cpu)/1e3), fmt.Sprintf("%.2f", sys)
		}
		fmt.Fprintf(out, "| %s | %s | %.0f | %s | %s | %s | %s | %.1f µs |\n", t.name, strings.Join(runs, ", "), rps, ms(p50), ms(p99), cpuCol, sysCol, float64(upCPU)/1e3)
	}
	ratio := means["c"] / means["b"]
	fmt.Fprintf(out, "\n- CPU time stolen by the hypervisor during this phase: %s (/proc/stat)\n", stealPercent(steal0, readCPUStat()))
	fmt.Fprintf(out, "- (b)/(a) = %.2f, (c)/(a) = %.2f\n", means["b"]/means["a"], means["c"]/means["a"])
	fmt.Fprintf(out, "- **(c)/(b) = %.2f** (target >= 0.80: %s)\n", ratio, passFail(ratio >= 0.8))
	if cpus["b"] > 0 {
		fmt.Fprintf(out, "- proxy CPU per request (c)/(b) = %.2f (less sensitive to noise than requests/s: what the proxy itself spends)\n", float64(cpus["c"])/float64(cpus["b"]))
	}
	if cpus["d"] > 0 {
		fmt.Fprintf(out, "- for information, (d) is (b) with sekisho's upstream pool as its transport: (d)/(b) = %.2f requests/s and %.2f CPU per request (what sekisho's own HTTP/1.1 client saves); (c)/(d) = %.2f requests/s and %.2f CPU per request (what sign-in, identity headers, assertion and audit cost on the same transport)\n",
			means["d"]/means["b"], float64(cpus["d"])/float64(cpus["b"]), means["c"]/means["d"], float64(cpus["c"])/float64(cpus["d"]))
	}
	fmt.Fprintln(out)
	return means["b"], nil
}

// fixedRate runs (b) and (c) at the same fixed rate in alternating slices
// (b c, c b, b c, ...) of o.slice, o.duration for each in all, so both see
// the same background noise; it reports the pooled percentiles and the
// median of the per-pair p99 differences.
func fixedRate(out io.Writer, o options, targets []target, rate float64) error {
	b, c := targets[0], targets[1]
	pairs := max(1, int(o.duration/o.slice))
	res := map[string][]rateResult{}
	var diffs, bP99s []time.Duration
	steal := map[string]cpuStat{} // summed over each target's slices
	logf("fixed rate %.0f/s: %d pairs of %s slices", rate, pairs, o.slice)
	for i := range pairs {
		pair := []target{b, c}
		if i%2 == 1 {
			pair = []target{c, b}
		}
		got := map[string]rateResult{}
		for _, t := range pair {
			s0 := readCPUStat()
			r, err := runRate(t.addr, "/", t.cookie, rate, o.slice, o.conns)
			if err != nil {
				return err
			}
			s1 := readCPUStat()
			st := steal[t.key]
			st.steal, st.total = st.steal+s1.steal-s0.steal, st.total+s1.total-s0.total
			steal[t.key] = st
			res[t.key] = append(res[t.key], r)
			got[t.key] = r
		}
		diffs = append(diffs, got["c"].P99-got["b"].P99)
		bP99s = append(bP99s, got["b"].P99)
	}
	fmt.Fprintf(out, "## Fixed rate: %.0f requests/s (half of (b)'s saturation), open loop, %d connections, %s for each target in %d alternating slices of %s\n\n",
		rate, o.conns, time.Duration(pairs)*o.slice, pairs, o.slice)
	fmt.Fprintf(out, "| target | achieved/s | p50 | p90 | **p99** | p99.9 | max | late | failed |\n|---|---|---|---|---|---|---|---|---|\n")
	merged := map[string]rateResult{}
	for _, t := range targets {
		m := merge(res[t.key]...)
		merged[t.key] = m
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | **%s** | %s | %s | %d | %d |\n", t.name, m.Achieved, ms(m.P50), ms(m.P90), ms(m.P99), ms(m.P999), ms(m.Max), m.Late, m.Bad)
	}
	d := merged["c"].P99 - merged["b"].P99
	slices.Sort(diffs)
	medDiff := diffs[len(diffs)/2]
	var ds []string
	for _, x := range diffs {
		ds = append(ds, fmt.Sprintf("%+.2f", float64(x)/1e6))
	}
	fmt.Fprintf(out, "\n- **p99(c) - p99(b) = %+.3f ms** over all samples (target <= 1 ms: %s); p50(c) - p50(b) = %+.3f ms\n",
		float64(d)/1e6, passFail(d <= time.Millisecond), float64(merged["c"].P50-merged["b"].P50)/1e6)
	fmt.Fprintf(out, "- p99(c) - p99(b) per pair of adjacent slices, sorted: %s ms; **median %+.3f ms** (target <= 1 ms: %s)\n",
		strings.Join(ds, ", "), float64(medDiff)/1e6, passFail(medDiff <= time.Millisecond))
	slices.Sort(bP99s)
	fmt.Fprintf(out, "- noise floor: (b)'s own p99 ranged from %s to %s between its %d slices (median %s)", ms(bP99s[0]), ms(bP99s[len(bP99s)-1]), len(bP99s), ms(bP99s[len(bP99s)/2]))
	if spread := bP99s[len(bP99s)-1] - bP99s[0]; spread > 5*time.Millisecond {
		fmt.Fprintf(out, ": **the 1 ms comparison is below this run's noise**, read it with the p50 and CPU figures")
	}
	fmt.Fprintf(out, "\n")
	fmt.Fprintf(out, "- CPU time the hypervisor gave to other machines (steal, /proc/stat) during (b)'s slices: %s, during (c)'s: %s\n",
		stealPercent(cpuStat{}, steal["b"]), stealPercent(cpuStat{}, steal["c"]))
	fmt.Fprintf(out, "- \"late\": requests that found every connection busy at their due time; their latency counts from the due time (no coordinated omission)\n\n")
	return nil
}

// auditCheck makes sure every proxied request in the load phases was let
// through as the signed-in user, not answered with a sign-in redirect
// (which wrk would count as a success).
func auditCheck(out io.Writer, path string) error {
	time.Sleep(500 * time.Millisecond) // the audit log flushes every 200 ms
	counts, err := countDecisions(path)
	if err != nil {
		return err
	}
	if counts["login"] > 0 || counts["deny"] > 0 {
		return fmt.Errorf("audit log %s: %d requests sent to sign in and %d denied during the load phases: the cookie did not work", path, counts["login"], counts["deny"])
	}
	fmt.Fprintf(out, "Audit log check: %d requests allowed as the signed-in user, %d gateway requests (sign-in), none sent to sign in or denied.\n\n", counts["allow"], counts["gateway"])
	return nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**FAIL**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
