package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// writer writes a batch every FlushEvery or when FlushSize bytes wait;
// while writes fail it retries after a pause that doubles up to retryMax.
func (l *Logger) writer() {
	defer l.stopped.Done()
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	pause := l.retryMin
	for {
		if l.Stats().Failing {
			retry := time.NewTimer(pause)
			select {
			case <-retry.C:
				pause = min(2*pause, l.retryMax)
			case <-l.wake:
				retry.Stop()
			case <-l.done:
				retry.Stop()
				return
			}
		} else {
			select {
			case <-t.C:
			case <-l.kick:
			case <-l.wake:
			case <-l.done:
				return
			}
		}
		if l.attempt() == nil {
			pause = l.retryMin
		}
	}
}

// attempt writes what waits, once (no retry).
func (l *Logger) attempt() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.writeLocked()
}

// writeLocked writes what waits to w and keeps the failure state (and its
// messages) up to date. writeMu is held.
func (l *Logger) writeLocked() error {
	lines, err := l.drain()
	l.mu.Lock()
	wasFailing := l.failing
	l.failing = err != nil
	l.lastErr = err
	pendingLines, pendingBytes := l.pendingLines, l.pendingBytes
	l.mu.Unlock()
	now := time.Now()
	switch {
	case err != nil:
		if !wasFailing {
			l.failedAt, l.reportedAt, l.droppedAtStart = now, now, l.dropped.Load()
			l.log.Error("audit log cannot be written: the unwritten lines are kept and retried; requests wait (or lines are dropped, with audit.on_failure: drop_and_count) once audit.max_pending bytes wait",
				"err", err, "pending_lines", pendingLines, "pending_bytes", pendingBytes, "max_pending", l.max)
		} else if now.Sub(l.reportedAt) >= failureReportEvery {
			l.reportedAt = now
			l.log.Error("audit log still cannot be written", "err", err, "failing_for", now.Sub(l.failedAt).Round(time.Second).String(),
				"pending_lines", pendingLines, "pending_bytes", pendingBytes, "dropped", l.dropped.Load()-l.droppedAtStart)
		}
	case wasFailing:
		l.log.Info("audit log written again", "lines_waited", lines, "failed_for", now.Sub(l.failedAt).Round(time.Millisecond).String(),
			"dropped", l.dropped.Load()-l.droppedAtStart)
	}
	return err
}

// statter is a writer that can tell its size: an *os.File.
type statter interface{ Stat() (fs.FileInfo, error) }

// drain writes the batch in flight from where it stopped, then each batch
// that waits, until none waits or a write fails. It returns the number of
// lines completed. writeMu is held.
func (l *Logger) drain() (lines int, err error) {
	for {
		if l.off == len(l.out) && !l.nextBatch() {
			return lines, nil
		}
		if l.tornSize >= 0 {
			// The last write stopped mid-line: if the file was truncated
			// since (copytruncate), the rest of the line would start the
			// new file torn, so the whole line is written again.
			if st, ok := l.w.(statter); ok {
				if fi, err := st.Stat(); err == nil && fi.Size() < l.tornSize {
					l.rewindToLineStart()
				}
			}
			l.tornSize = -1
		}
		rest := l.out[l.off:]
		n, err := l.w.Write(rest)
		n = min(max(n, 0), len(rest))
		if err == nil && n < len(rest) {
			err = io.ErrShortWrite
		}
		done := bytes.Count(rest[:n], []byte{'\n'})
		l.off += n
		lines += done
		if n > 0 {
			l.mu.Lock()
			l.pendingBytes -= n
			l.pendingLines -= done
			l.room.Broadcast()
			l.mu.Unlock()
		}
		if err != nil {
			l.writeErrors.Add(1)
			if l.off > 0 && l.out[l.off-1] != '\n' {
				if st, ok := l.w.(statter); ok {
					if fi, serr := st.Stat(); serr == nil {
						l.tornSize = fi.Size()
					}
				}
			}
			if n == 0 {
				return lines, err
			}
			// A write that took some bytes is retried at once from the
			// byte it stopped at: the disk that filled up fails the next
			// with nothing written; a writer that only takes some bytes
			// at a time is not a failure.
		}
	}
}

// nextBatch makes the waiting lines the batch in flight, giving the
// written batch's buffer back for reuse; false when no line waits.
// writeMu is held.
func (l *Logger) nextBatch() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare == nil && l.out != nil && cap(l.out) <= maxKeptBuffer {
		l.spare = l.out[:0]
	}
	l.out, l.off = nil, 0
	if len(l.buf) == 0 {
		return false
	}
	l.out, l.buf, l.spare = l.buf, l.spare, nil
	return true
}

// rewindToLineStart moves the batch in flight back to the start of the
// line a failed write stopped in, so that line is written whole again
// (to a new or truncated file). writeMu is held.
func (l *Logger) rewindToLineStart() {
	start := bytes.LastIndexByte(l.out[:l.off], '\n') + 1
	l.mu.Lock()
	l.pendingBytes += l.off - start
	l.mu.Unlock()
	l.off = start
}

// Flush writes the lines that wait, once, and returns the write's error:
// non-nil when lines are still waiting (they stay, and are retried).
func (l *Logger) Flush() error {
	err := l.attempt()
	if err != nil {
		return fmt.Errorf("audit: %d lines not written yet: %w", l.Stats().PendingLines, err)
	}
	return nil
}

// Switch makes w the output, as after logrotate moved the file away (a
// reopen on SIGHUP). The lines that wait are first written to the old
// output, if it takes them; what it does not take goes to w, each line
// whole (a line the old output took in part is written again in full).
// Then the old output is closed (if it is an io.Closer), and its Close
// error returned. If w is an io.Closer, Close closes it.
//
// Switch waits for a write in progress, so it waits as long as the old
// output blocks its write (a hung network file system). After Close, it
// closes w and returns an error.
func (l *Logger) Switch(w io.Writer) error {
	l.writeMu.Lock()
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		l.writeMu.Unlock()
		if c := closerOf(w); c != nil {
			c.Close()
		}
		return errClosed
	}
	_ = l.writeLocked() // the old output takes what it can; errors are logged
	old := l.closer
	l.w, l.closer = w, closerOf(w)
	if l.off < len(l.out) {
		l.rewindToLineStart()
	}
	l.tornSize = -1
	var err error
	if l.Stats().PendingBytes > 0 {
		err = l.writeLocked()
	}
	l.writeMu.Unlock()
	select {
	case l.wake <- struct{}{}: // the writer goroutine's pause is over
	default:
	}
	if old != nil {
		if cerr := old.Close(); cerr != nil {
			return fmt.Errorf("audit: closing the previous output: %w", cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("audit: the new output fails too (lines are kept and retried): %w", err)
	}
	return nil
}

var errClosed = errors.New("audit: the log is closed")

// Close stops the logger: it retries writing the lines that wait for at
// most Options.CloseTimeout (5 s by default), then closes the underlying
// writer if it is an io.Closer. Lines still unwritten then, and those of
// Logs still waiting for room, are lost: Close logs how many at ERROR and
// returns an error saying so. Log after Close drops the line and counts
// it. Close is idempotent.
func (l *Logger) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.isClosed {
		return l.closeErr
	}
	l.isClosed = true
	close(l.done)
	l.stopped.Wait()

	deadline := time.Now().Add(l.closeWait)
	pause := l.retryMin
	var lost, unwritten int
	var lastErr error
	for {
		l.writeMu.Lock()
		err := l.writeLocked()
		if err != nil {
			lastErr = err
		}
		l.mu.Lock()
		end := l.pendingBytes == 0 || !time.Now().Before(deadline)
		if end {
			// Closed under the locks: no Log adds a line, no write is
			// made, once this is seen. The unwritten lines are dropped;
			// the Logs waiting for room count theirs as they wake.
			l.closed = true
			unwritten = l.pendingLines
			lost = unwritten + l.waiting
			l.buf, l.spare, l.pendingBytes, l.pendingLines = nil, nil, 0, 0
			l.out, l.off = nil, 0
			l.room.Broadcast()
		}
		l.mu.Unlock()
		l.writeMu.Unlock()
		if end {
			break
		}
		if err != nil {
			time.Sleep(min(pause, time.Until(deadline)))
			pause = min(2*pause, l.retryMax)
		}
	}
	var errs []error
	if lost > 0 {
		l.dropped.Add(uint64(unwritten))
		l.log.Error("audit lines lost at shutdown: the output could not be written in time",
			"lost_lines", lost, "close_timeout", l.closeWait.String(), "err", lastErr)
		errs = append(errs, fmt.Errorf("audit: %d lines could not be written within %s and are lost: %w", lost, l.closeWait, lastErr))
	}
	l.writeMu.Lock()
	if l.closer != nil {
		if err := l.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: closing the output: %w", err))
		}
	}
	l.writeMu.Unlock()
	l.closeErr = errors.Join(errs...)
	return l.closeErr
}
