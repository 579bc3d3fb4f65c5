package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name           string
		live, headroom uint64
		want           int
	}{
		{"nothing live yet: the cap, whose minimum heap is the headroom", 0, 32 * mib, 800},
		{"tiny heap: the cap", 1024, 32 * mib, 800},
		{"8 MiB live: 4 times the heap", 8 * mib, 32 * mib, 400},
		{"rounded up, never below the headroom", 6 * mib, 32 * mib, 534},
		{"a bigger headroom allows more", 6 * mib, 64 * mib, 1067},
		{"live equal to the headroom: the default", 32 * mib, 32 * mib, basePercent},
		{"big heap: the default, never less", 500 * mib, 32 * mib, basePercent},
		{"no headroom asked: the default", 4 * mib, 0, basePercent},
		{"headroom under the runtime's minimum heap: the default", 1 * mib, 2 * mib, basePercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Percent(tc.live, tc.headroom)
			if got != tc.want {
				t.Fatalf("Percent(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
			}
			if tc.live > 0 && tc.headroom > 0 && got < int(tc.headroom*100/heapMinimum) && tc.live*uint64(got)/100 < tc.headroom {
				t.Fatalf("Percent(%d, %d) = %d leaves only %d bytes of headroom", tc.live, tc.headroom, got, tc.live*uint64(got)/100)
			}
		})
	}
}

func TestEnabledOnlyWithoutGOGC(t *testing.T) {
	for _, tc := range []struct {
		gogc string
		want bool
	}{{"", true}, {"100", false}, {"off", false}, {"400", false}} {
		got := Enabled(func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if got != tc.want {
			t.Errorf("GOGC=%q: Enabled = %v, want %v", tc.gogc, got, tc.want)
		}
	}
}

// gogc reads the GOGC in force from the runtime.
func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatal("runtime has no /gc/gogc:percent")
	}
	return int(s[0].Value.Uint64())
}

// waitGOGC collects until the pacer has set want (its finalizer runs on
// the runtime's finalizer goroutine, a moment after the collection).
func waitGOGC(t *testing.T, want func(int) bool, what string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		got := gogc(t)
		if want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d after collections for 10s; want %s", got, what)
		}
	}
}

var keep []byte

func TestStartFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	const headroom = 64 << 20
	stop := Start(headroom)

	// This test binary's live heap is a few MiB at most: the pacer must
	// raise GOGC well above the default.
	got := waitGOGC(t, func(p int) bool { return p > 400 }, "> 400 with a small live heap")
	t.Logf("small heap: GOGC %d", got)

	// A live heap larger than the headroom: back to the default.
	keep = make([]byte, 2*headroom)
	for i := 0; i < len(keep); i += 4096 {
		keep[i] = 1
	}
	waitGOGC(t, func(p int) bool { return p == basePercent }, "100 with 128 MiB live")

	// And up again once it is gone.
	keep = nil
	waitGOGC(t, func(p int) bool { return p > 400 }, "> 400 once the big heap is garbage")

	stop()
	if got := gogc(t); got != 150 {
		t.Fatalf("after stop GOGC = %d, want the 150 in force before Start", got)
	}
	// The pacer no longer touches GOGC after stop, even across collections.
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := gogc(t); got != 150 {
		t.Fatalf("collections after stop changed GOGC to %d", got)
	}
	stop() // a second stop is harmless
}

func TestStartTwicePanics(t *testing.T) {
	stop := Start(Headroom)
	defer stop()
	defer func() {
		if recover() == nil {
			t.Fatal("a second Start did not panic")
		}
	}()
	Start(Headroom)
}
