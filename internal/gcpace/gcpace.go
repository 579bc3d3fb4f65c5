// Package gcpace keeps a floor under the garbage collector's headroom.
//
// With the runtime's default (GOGC=100) the heap may grow by as much as is
// live before the next collection. A gateway's live heap is small (a few
// MiB: config, compiled rules, key sets) while every request makes about
// 10 KB of short-lived garbage, so at 10,000 requests/s it collects some 25
// times a second. Each collection marks the whole live heap and, while it
// marks, makes the requests in flight help (mark assists): on a small
// machine that shows as latency in the tail, not as throughput.
//
// Start raises GOGC after each collection so that the heap may grow to the
// live heap plus Headroom before the next one (to Headroom in all while the
// live heap is under 4 MiB: GOGC is capped at 800, where the runtime's
// minimum heap is 32 MiB), and leaves it at the base
// value (100) once the live heap is larger than Headroom: a big gateway
// (thousands of open streams) behaves exactly as the runtime's default. The
// cost is at most Headroom bytes more heap than the default would use, and
// only while the live heap is small. The memory limit (GOMEMLIMIT) still
// applies: the runtime collects early near it whatever GOGC says.
//
// An operator who sets GOGC has taken charge of the collector; Enabled then
// reports false and sekisho leaves it alone.
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Headroom is how much the heap may grow past the live heap before the
// next collection, when the live heap is small: 32 MiB.
const Headroom = 32 << 20

// basePercent is GOGC when the live heap is at least Headroom: the
// runtime's default.
const basePercent = 100

// heapMinimum is the runtime's smallest heap goal at GOGC=100 (4 MiB); it
// scales with GOGC, so GOGC=800 never collects below 32 MiB.
const heapMinimum = 4 << 20

// Percent is the GOGC that lets a heap of live bytes grow by at least
// headroom bytes before the next collection, and never less than the
// runtime's default. It is at most the GOGC whose minimum heap (4 MiB at
// 100, scaled) is headroom: so when almost nothing is live the heap goal is
// about headroom, not a hundred times the live heap, and a live heap under
// headroom/8 gets a little less than headroom to grow.
func Percent(live, headroom uint64) int {
	top := headroom * basePercent / heapMinimum
	if top <= basePercent {
		return basePercent
	}
	if live == 0 {
		return int(top)
	}
	p := headroom * 100 / live
	if headroom*100%live != 0 {
		p++
	}
	return int(min(max(p, basePercent), top))
}

// Enabled reports whether the pacer should run: not when the operator set
// GOGC (getenv is os.Getenv outside tests).
func Enabled(getenv func(string) string) bool {
	return getenv("GOGC") == ""
}

// Start adjusts GOGC after every collection, as the package comment says,
// until stop is called; stop puts back the GOGC that was in force before.
// Start is meant for `sekisho serve`; one pacer runs at a time (a second
// Start before stop panics: two pacers would fight over one setting).
func Start(headroom uint64) (stop func()) {
	mu.Lock()
	defer mu.Unlock()
	if running != nil {
		panic("gcpace: Start called twice without stop")
	}
	p := &pacer{headroom: headroom, sample: []metrics.Sample{{Name: liveMetric}}}
	// Until the first collection (start-up's garbage is in the heap) the
	// default applies; the pacer takes over after it.
	p.before = debug.SetGCPercent(basePercent)
	running = p
	p.arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if running != p {
			return
		}
		running = nil
		debug.SetGCPercent(p.before)
	}
}

const liveMetric = "/gc/heap/live:bytes"

var (
	mu      sync.Mutex
	running *pacer
)

type pacer struct {
	headroom uint64
	before   int
	sample   []metrics.Sample
}

// sentinel is garbage from the moment it is made; its finalizer runs after
// the collection that finds it, which is how the pacer hears of each cycle.
type sentinel struct{ p *pacer }

func (p *pacer) arm() {
	runtime.SetFinalizer(&sentinel{p: p}, func(s *sentinel) {
		mu.Lock()
		defer mu.Unlock()
		if running != s.p {
			return // stopped: let the chain end
		}
		s.p.adjust()
		s.p.arm()
	})
}

// adjust sets GOGC from the live heap the last collection found. The
// caller holds mu.
func (p *pacer) adjust() {
	metrics.Read(p.sample)
	if p.sample[0].Value.Kind() != metrics.KindUint64 {
		return // a runtime without the metric: keep the default
	}
	debug.SetGCPercent(Percent(p.sample[0].Value.Uint64(), p.headroom))
}
