package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the watcher waits after the last change in
// the config's directory before it reads the file: editors and
// Kubernetes write in several steps.
const watchDebounce = 300 * time.Millisecond

// watchConfig reloads when the content of the config file at path
// changes, until ctx ends. It watches the file's directory, not the file:
// editors replace files by renaming, and a Kubernetes ConfigMap volume
// swaps a "..data" symlink, so the file's own inode comes and goes. Each
// burst of events is read once, and only a file whose bytes differ from
// the last ones seen is reloaded (a touch or a rewrite of the same bytes
// reloads nothing).
func watchConfig(ctx context.Context, path string, reload func(), log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	last := fileSum(path)
	go func() {
		defer w.Close()
		var fire <-chan time.Time
		var timer *time.Timer
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				if timer != nil {
					timer.Stop()
				}
				timer = time.NewTimer(watchDebounce)
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("watching the config directory", "component", "watch", "dir", dir, "err", err)
			case <-fire:
				fire = nil
				sum := fileSum(path)
				if sum == nil || bytes.Equal(sum, last) {
					continue // gone for a moment mid-swap, or unchanged
				}
				last = sum
				log.Info("the config file changed: reloading", "component", "watch", "config", path)
				reload()
			}
		}
	}()
	return nil
}

// fileSum is the SHA-256 of the file's bytes (following symlinks); nil
// when it cannot be read.
func fileSum(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(b)
	return s[:]
}
