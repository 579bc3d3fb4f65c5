package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runtimeStats are exact counters from the runtime (MemStats, as
// /debug/pprof/heap?debug=1 prints them).
type runtimeStats struct{ totalAlloc, mallocs, numGC int64 }

func readRuntimeStats(base string) (runtimeStats, error) {
	res, err := http.Get(base + "heap?debug=1")
	if err != nil {
		return runtimeStats{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return runtimeStats{}, err
	}
	var st runtimeStats
	for line := range strings.Lines(string(b)) {
		for _, f := range []struct {
			prefix string
			dst    *int64
		}{{"# TotalAlloc = ", &st.totalAlloc}, {"# Mallocs = ", &st.mallocs}, {"# NumGC = ", &st.numGC}} {
			if v, ok := strings.CutPrefix(line, f.prefix); ok {
				*f.dst, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	if st.mallocs == 0 {
		return st, fmt.Errorf("no MemStats in %sheap?debug=1", base)
	}
	return st, nil
}

// loadCost is what one proxy spent per request under saturation.
type loadCost struct {
	name          string
	rps           float64
	requests      int64
	cpu           time.Duration // per request
	bytes, allocs float64       // per request
	gcPer10kReqs  float64
}

// measureLoad saturates url with wrk for o.duration+2s and reads the
// proxy's runtime counters and CPU time before and after. With cpuPath set
// it also saves a CPU profile of o.duration taken in the middle.
func measureLoad(o options, name, url, cookie, pprofBase string, pid int, cpuPath string) (loadCost, error) {
	c := loadCost{name: name}
	st0, err := readRuntimeStats(pprofBase)
	if err != nil {
		return c, err
	}
	cpu0, _ := cpuTime(pid)
	wrkDone := make(chan error, 1)
	var wr wrkResult
	go func() {
		r, _, err := runWrk(url, cookie, o.conns, o.duration+2*time.Second)
		wr = r
		wrkDone <- err
	}()
	if cpuPath != "" {
		time.Sleep(time.Second)
		if err := saveURL(cpuPath, fmt.Sprintf("%sprofile?seconds=%d", pprofBase, int(o.duration/time.Second))); err != nil {
			return c, err
		}
	}
	if err := <-wrkDone; err != nil {
		return c, err
	}
	cpu1, _ := cpuTime(pid)
	st1, err := readRuntimeStats(pprofBase)
	if err != nil {
		return c, err
	}
	n := float64(max(wr.Requests, 1))
	c.rps, c.requests = wr.RPS, wr.Requests
	c.cpu = time.Duration(float64(cpu1-cpu0) / n)
	c.bytes = float64(st1.totalAlloc-st0.totalAlloc) / n
	c.allocs = float64(st1.mallocs-st0.mallocs) / n
	c.gcPer10kReqs = float64(st1.numGC-st0.numGC) / n * 1e4
	return c, nil
}

func saveURL(path, url string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, res.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, res.Body)
	return err
}

// pprofTop prints `go tool pprof -top` of a profile, without its preamble.
func pprofTop(out io.Writer, title string, args ...string) error {
	cmd := exec.Command("go", append([]string{"tool", "pprof", "-top"}, args...)...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof %s: %v: %s", strings.Join(args, " "), err, b)
	}
	fmt.Fprintf(out, "%s:\n\n```\n", title)
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		fmt.Fprint(out, line)
	}
	fmt.Fprintf(out, "```\n\n")
	return nil
}

// pprofPhase compares what the bare proxy and sekisho spend per request
// (CPU, allocated bytes and objects, garbage collections: exact runtime
// counters), then profiles sekisho (bench/cmd/sekisho-pprof: the same code
// plus net/http/pprof on loopback) to say where its extra cost goes, and
// what an idle stream holds in its heap.
func pprofPhase(out io.Writer, o options, dir, bin, bareBin, upAddr string, gw *gateway, cookie string) error {
	var costs []loadCost
	var bareStreams streamMem
	{
		paddr, err := freeAddr()
		if err != nil {
			return err
		}
		bare, addr, err := start("bareproxy", filepath.Join(dir, "bareproxy-pprof.log"), true, bareBin, "-target", "http://"+upAddr, "-pprof", paddr)
		if err != nil {
			return err
		}
		logf("pprof: the bare proxy's cost per request under saturation")
		runWrk("http://"+addr+"/", "", o.conns, 2*time.Second) // warm up
		c, err := measureLoad(o, "(b) bare httputil.ReverseProxy", "http://"+addr+"/", "", "http://"+paddr+"/debug/pprof/", bare.pid(), "")
		if err == nil {
			bareStreams, err = streamMemory(addr, "", "http://"+paddr+"/debug/pprof/", min(o.streams, 1000), "")
			bareStreams.name = "(b) bare httputil.ReverseProxy"
		}
		bare.stop()
		if err != nil {
			return err
		}
		costs = append(costs, c)
	}
	paddr, err := freeAddr()
	if err != nil {
		return err
	}
	os.Setenv("SEKISHO_PPROF", paddr)
	defer os.Unsetenv("SEKISHO_PPROF")
	pg := *gw
	pg.bin = bin
	sk, err := pg.serve("sekisho-pprof.log")
	if err != nil {
		return err
	}
	defer sk.stop()
	if err := pg.checkThrough(cookie); err != nil {
		return err
	}
	base := "http://" + paddr + "/debug/pprof/"
	logf("pprof: sekisho's cost per request under saturation, with a CPU profile")
	runWrk("http://"+gw.addr+"/", cookie, o.conns, 2*time.Second) // warm up
	allocs0 := filepath.Join(dir, "allocs-0.pprof")
	if err := saveURL(allocs0, base+"allocs"); err != nil {
		return err
	}
	cpu := filepath.Join(dir, "cpu.pprof")
	c, err := measureLoad(o, "(c) sekisho, session cookie", "http://"+gw.addr+"/", cookie, base, sk.pid(), cpu)
	if err != nil {
		return err
	}
	costs = append(costs, c)
	allocs1 := filepath.Join(dir, "allocs-1.pprof")
	if err := saveURL(allocs1, base+"allocs"); err != nil {
		return err
	}

	fmt.Fprintf(out, "## Cost per request under saturation, from the runtime's own counters (both proxies built with net/http/pprof, wrk -c%d for %s)\n\n", o.conns, o.duration+2*time.Second)
	fmt.Fprintf(out, "| proxy | requests/s | CPU per request | bytes allocated per request | objects allocated per request | GCs per 10k requests |\n|---|---|---|---|---|---|\n")
	for _, c := range costs {
		fmt.Fprintf(out, "| %s | %.0f | %.1f µs | %.0f | %.1f | %.2f |\n", c.name, c.rps, float64(c.cpu)/1e3, c.bytes, c.allocs, c.gcPer10kReqs)
	}
	b, k := costs[0], costs[1]
	fmt.Fprintf(out, "\n- (c)/(b): CPU %.2f, bytes %.2f, objects %.2f; sekisho adds %.1f µs, %.0f bytes and %.0f objects per request\n\n",
		float64(k.cpu)/float64(b.cpu), k.bytes/b.bytes, k.allocs/b.allocs, float64(k.cpu-b.cpu)/1e3, k.bytes-b.bytes, k.allocs-b.allocs)

	fmt.Fprintf(out, "## pprof of sekisho under saturation (bench/cmd/sekisho-pprof: the same code plus net/http/pprof)\n\n")
	if err := pprofTop(out, "CPU, cumulative, sekisho's own functions and the big library costs", "-cum", "-nodecount=400",
		"-show=sekisho|ReverseProxy|net/http\\.\\(\\*conn\\)\\.serve$|Transport\\)\\.roundTrip$|encoding/json|crypto/|mallocgc$|gcBgMarkWorker$|textproto|mime\\.|context\\.With|time\\.AfterFunc|Header\\)\\.(Clone|Del|Set|Get)$", cpu); err != nil {
		return err
	}
	if err := pprofTop(out, fmt.Sprintf("Allocated bytes during the load (divide by %d requests), by function, cumulative", k.requests),
		"-sample_index=alloc_space", "-cum", "-nodecount=30", "-base", allocs0, allocs1); err != nil {
		return err
	}
	if err := pprofTop(out, "Allocated bytes during the load, by function, flat (where the objects are made)",
		"-sample_index=alloc_space", "-nodecount=20", "-base", allocs0, allocs1); err != nil {
		return err
	}

	n := min(o.streams, 1000)
	logf("pprof: heap with %d idle SSE streams", n)
	heap := filepath.Join(dir, "heap.pprof")
	skStreams, err := streamMemory(gw.addr, cookie, base, n, heap)
	if err != nil {
		return err
	}
	skStreams.name = "(c) sekisho, session cookie"
	fmt.Fprintf(out, "## Memory of %d idle SSE streams, from the runtime's counters\n\n", n)
	fmt.Fprintf(out, "| proxy | goroutines per stream | stack per stream | heap in use per stream |\n|---|---|---|---|\n")
	for _, r := range []streamMem{bareStreams, skStreams} {
		fmt.Fprintf(out, "| %s | %.1f | %.1f KiB | %.1f KiB |\n", r.name, r.goroutines, r.stack/1024, r.heap/1024)
	}
	fmt.Fprintf(out, "\n(differences against the process before the streams were opened, after a GC)\n\n")
	return pprofTop(out, fmt.Sprintf("sekisho's in-use heap with %d idle SSE streams (divide by %d), by function, flat", n, n),
		"-sample_index=inuse_space", "-nodecount=20", heap)
}

// streamMem is what one idle stream costs a proxy: goroutines, stack and
// heap (differences before and after opening the streams, after a GC).
type streamMem struct {
	name                    string
	goroutines, stack, heap float64
}

type memCounters struct{ goroutines, stack, heapInuse int64 }

func readMemCounters(base string) (memCounters, error) {
	var m memCounters
	// heap?gc=1 runs a GC first, so HeapInuse is live memory.
	if res, err := http.Get(base + "heap?gc=1&debug=1"); err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
				v, _, _ = strings.Cut(strings.TrimSpace(v), " ")
				m.stack, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
				m.heapInuse, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	} else {
		return m, err
	}
	res, err := http.Get(base + "goroutine?debug=1")
	if err != nil {
		return m, err
	}
	first, _ := io.ReadAll(io.LimitReader(res.Body, 200))
	res.Body.Close()
	// "goroutine profile: total N"
	if _, v, ok := strings.Cut(strings.SplitN(string(first), "\n", 2)[0], "total "); ok {
		m.goroutines, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	if m.goroutines == 0 || m.stack == 0 {
		return m, fmt.Errorf("no goroutine or stack counts from %s", base)
	}
	return m, nil
}

// streamMemory opens n idle streams through addr and measures them with
// the proxy's pprof endpoint at base; with heapPath set it also saves a
// heap profile while they are open.
func streamMemory(addr, cookie, base string, n int, heapPath string) (streamMem, error) {
	var r streamMem
	before, err := readMemCounters(base)
	if err != nil {
		return r, err
	}
	conns, err := openStreams(addr, "/sse", cookie, n, 32)
	if err != nil {
		return r, err
	}
	defer closeAll(conns)
	time.Sleep(time.Second)
	after, err := readMemCounters(base)
	if err != nil {
		return r, err
	}
	if heapPath != "" {
		if err := saveURL(heapPath, base+"heap"); err != nil {
			return r, err
		}
	}
	r.goroutines = float64(after.goroutines-before.goroutines) / float64(n)
	r.stack = float64(after.stack-before.stack) / float64(n)
	r.heap = float64(after.heapInuse-before.heapInuse) / float64(n)
	return r, nil
}
