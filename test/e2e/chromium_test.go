package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium with one tab.
type browser struct {
	ctx   context.Context // the tab; has no deadline, steps add their own
	shots string          // where screenshots go: the test's temp dir
}

// chromiumPath returns the browser to run: $SEKISHO_CHROMIUM, or chromium on
// PATH. Without one the test skips, except under CI, where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SEKISHO_CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not installed (CI must run the browser test): apt-get install chromium")
		}
		t.Skip("chromium not installed: apt-get install chromium")
	}
	return p
}

// startBrowser starts headless Chromium (execPath, from chromiumPath) and
// opens a tab. At cleanup it closes
// the browser; chromedp's allocator then kills the whole process tree (it
// finds the children by their --user-data-dir) and removes the profile, and
// the cleanup fails the test if any process of that profile is left.
//
// The profile is a fresh temporary directory that chromedp makes: when the
// caller names the directory, chromedp neither kills the leftover children
// nor removes it.
func startBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	output := new(syncBuffer)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(output),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx,
		chromedp.WithErrorf(func(format string, args ...any) {
			fmt.Fprintf(output, "chromedp: "+format+"\n", args...)
		}))

	var profile string
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits until the browser has exited and its profile is gone
		if profile != "" {
			if left := processesWithArg("--user-data-dir=" + profile); len(left) > 0 {
				t.Errorf("chromium processes left after cleanup: %v", left)
			}
		}
		if t.Failed() {
			t.Logf("chromium output:\n%s", output)
		}
	})

	// The first action starts the browser and binds its life to ctx, so it
	// runs on ctx itself; a watchdog bounds the start instead of a deadline.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
	case <-time.After(stepTimeout):
		t.Fatalf("chromium did not start")
	}
	if p := chromedp.FromContext(ctx).Browser.Process(); p != nil {
		profile = argValue(p.Pid, "--user-data-dir=")
	}
	return &browser{ctx: ctx, shots: t.TempDir()}
}

// do runs actions in the tab, failing the test on error.
func (b *browser) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// run runs one action in the tab and returns its value, failing the test on
// error.
func run[T any](t *testing.T, b *browser, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// screenshot saves a full-page PNG of the tab as NAME.png in the test's temp
// dir, and in $SEKISHO_E2E_SCREENSHOTS when that is set.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	png := run(t, b, chromedp.FullScreenshot(100))
	dirs := []string{b.shots}
	if d := os.Getenv("SEKISHO_E2E_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

// argValue returns the value of the first command-line argument of process
// pid that starts with prefix, or "" (also where /proc does not exist).
func argValue(pid int, prefix string) string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	for arg := range strings.SplitSeq(string(cmdline), "\x00") {
		if v, ok := strings.CutPrefix(arg, prefix); ok {
			return v
		}
	}
	return ""
}

// processesWithArg lists the processes that have arg on their command line;
// nil where /proc does not exist.
func processesWithArg(arg string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for a := range strings.SplitSeq(string(cmdline), "\x00") {
			if a == arg {
				found = append(found, e.Name())
				break
			}
		}
	}
	return found
}
