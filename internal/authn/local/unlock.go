package local

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sekisho/sekisho/internal/store"
)

// UnlockSource is the part of the store PollUnlocks reads; *store.SQLite
// satisfies it.
type UnlockSource interface {
	LatestUnlock(ctx context.Context) (int64, error)
	UnlocksSince(ctx context.Context, seq int64) ([]store.Unlock, error)
}

// DefaultUnlockPoll is how often PollUnlocks reads the log when asked for
// a non-positive interval: an unlock takes effect within this long.
const DefaultUnlockPoll = 2 * time.Second

// PollUnlocks applies account unlocks written to src (by `sekisho user
// unlock` in any process) until ctx is done, reading the log every
// interval (non-positive: DefaultUnlockPoll). Run it in a goroutine next
// to the session revocation poller; it returns when ctx is done, at once
// for a nil Throttle.
//
// It starts after the newest row present when it first reaches the store,
// so an unlock from before this process started never lifts a lockout
// that began since. Errors are logged on logger (nil: slog.Default()) and
// retried at the next tick; a failing store unlocks nothing. A receive on
// wake (nil: none) reads the log at once, between ticks.
func (t *Throttle) PollUnlocks(ctx context.Context, src UnlockSource, every time.Duration, logger *slog.Logger, wake <-chan struct{}) {
	if t == nil || src == nil {
		return
	}
	if every <= 0 {
		every = DefaultUnlockPoll
	}
	if logger == nil {
		logger = slog.Default()
	}
	p := &unlockPoller{t: t, src: src}
	if err := p.sync(ctx); err != nil && ctx.Err() == nil {
		logger.Warn("account unlock poll failed; retrying", "component", "local", "err", err)
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		case <-wake: // the store said an unlock was written
		}
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("account unlock poll failed; retrying", "component", "local", "err", err)
		}
	}
}

// unlockPoller is PollUnlocks' cursor into the log.
type unlockPoller struct {
	t       *Throttle
	src     UnlockSource
	seq     int64
	started bool
}

// sync runs one round: the first successful one only finds the start of
// the log; later ones apply every row after the cursor.
func (p *unlockPoller) sync(ctx context.Context) error {
	if !p.started {
		seq, err := p.src.LatestUnlock(ctx)
		if err != nil {
			return fmt.Errorf("local: find the newest account unlock: %w", err)
		}
		p.seq, p.started = seq, true
		return nil
	}
	for {
		rows, err := p.src.UnlocksSince(ctx, p.seq)
		if err != nil {
			return fmt.Errorf("local: read account unlocks after seq %d: %w", p.seq, err)
		}
		for _, u := range rows {
			p.t.Unlock(u.User)
			p.seq = max(p.seq, u.Seq)
		}
		if len(rows) < store.UnlockBatch {
			return nil
		}
	}
}
