package store

import (
	"context"
	"log/slog"
	"time"
)

// Change tables a Notifier names: the logs replicas follow.
const (
	ChangedRevocations = "revocations"
	ChangedAPIKeys     = "api_key_changes"
	ChangedUnlocks     = "account_unlocks"
	// ChangedAll means notifications may have been missed (the connection
	// was lost): every log should be read again.
	ChangedAll = ""
)

// Notifier is a store that tells of changes to the logs replicas follow as
// they commit, so that a sign-out, a disabled account or a revoked key
// reaches every replica at once rather than at the next poll.
type Notifier interface {
	// Listen calls changed with the table of each change (or ChangedAll
	// after a reconnect) until ctx ends. It reconnects by itself; it
	// returns only when ctx ends.
	Listen(ctx context.Context, changed func(table string), logger *slog.Logger)
}

var _ Notifier = (*Postgres)(nil)

// Listen implements Notifier with LISTEN sekisho_changes on a connection
// of its own (the migration's triggers NOTIFY it). While the database is
// unreachable it retries with a growing pause, up to 10 s; once back, it
// calls changed(ChangedAll), since what changed meanwhile was not heard.
func (p *Postgres) Listen(ctx context.Context, changed func(table string), logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	pause, lost := time.Duration(0), false
	for ctx.Err() == nil {
		err := p.listenOnce(ctx, changed, &lost, logger)
		if ctx.Err() != nil {
			return
		}
		if !lost {
			logger.Warn("lost the database's change notifications; polling until they are back", "component", "store", "err", err)
			lost = true
		}
		pause = min(max(2*pause, 250*time.Millisecond), 10*time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (p *Postgres) listenOnce(ctx context.Context, changed func(string), lost *bool, logger *slog.Logger) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is LISTENing: it never goes back to the pool.
	conn := c.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN sekisho_changes"); err != nil {
		return err
	}
	if *lost {
		*lost = false
		logger.Info("the database's change notifications are back", "component", "store")
		changed(ChangedAll)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		changed(n.Payload)
	}
}
