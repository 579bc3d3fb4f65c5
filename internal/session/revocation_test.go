package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sess(id, user string, issued time.Time) Session {
	return Session{ID: id, User: user, IssuedAt: issued, LastSeen: issued}
}

func TestRevocations(t *testing.T) {
	tests := []struct {
		name   string
		revoke func(r *Revocations)
		s      Session
		want   bool
	}{
		{name: "nothing_revoked", revoke: func(r *Revocations) {}, s: sess("a", "alice", t0), want: false},
		{name: "revoked_session_id", revoke: func(r *Revocations) { r.RevokeSession("a", t0.Add(time.Hour)) }, s: sess("a", "alice", t0), want: true},
		{name: "other_session_id", revoke: func(r *Revocations) { r.RevokeSession("b", t0.Add(time.Hour)) }, s: sess("a", "alice", t0), want: false},
		{name: "empty_id_ignored", revoke: func(r *Revocations) { r.RevokeSession("", t0.Add(time.Hour)) }, s: sess("", "alice", t0), want: false},
		{name: "revoked_user_before_issue", revoke: func(r *Revocations) { r.RevokeUserBefore("alice", t0.Add(time.Second)) }, s: sess("a", "alice", t0), want: true},
		{name: "user_revoked_at_issue_time_fails_closed", revoke: func(r *Revocations) { r.RevokeUserBefore("alice", t0) }, s: sess("a", "alice", t0), want: true},
		{name: "session_issued_second_after_revocation_survives", revoke: func(r *Revocations) { r.RevokeUserBefore("alice", t0.Add(-time.Second)) }, s: sess("a", "alice", t0), want: false},
		{name: "session_after_user_revocation", revoke: func(r *Revocations) { r.RevokeUserBefore("alice", t0.Add(-time.Hour)) }, s: sess("a", "alice", t0), want: false},
		// A sign-in racing `user disable` in the same second must not survive it.
		{name: "disable_racing_sign_in_same_second_revokes", revoke: func(r *Revocations) {
			r.RevokeUserBefore("alice", t0.Add(700*time.Millisecond))
		}, s: sess("a", "alice", t0), want: true},
		{name: "session_issued_second_before_revocation", revoke: func(r *Revocations) {
			r.RevokeUserBefore("alice", t0.Add(1700*time.Millisecond))
		}, s: sess("a", "alice", t0), want: true},
		{name: "other_user", revoke: func(r *Revocations) { r.RevokeUserBefore("bob", t0.Add(time.Hour)) }, s: sess("a", "alice", t0), want: false},
		{name: "earlier_revocation_does_not_shorten", revoke: func(r *Revocations) {
			r.RevokeUserBefore("alice", t0.Add(time.Hour))
			r.RevokeUserBefore("alice", t0.Add(-time.Hour))
		}, s: sess("a", "alice", t0), want: true},
		{name: "applied_user_row", revoke: func(r *Revocations) {
			r.Apply([]Revocation{{Seq: 1, User: "alice", Before: t0.Add(time.Minute), Until: t0.Add(13 * time.Hour)}})
		}, s: sess("a", "alice", t0), want: true},
		{name: "applied_session_row", revoke: func(r *Revocations) {
			r.Apply([]Revocation{{Seq: 1, SessionID: "a", Until: t0.Add(time.Hour)}})
		}, s: sess("a", "alice", t0), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRevocations()
			tc.revoke(r)
			if got := r.IsRevoked(tc.s); got != tc.want {
				t.Errorf("IsRevoked = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("nil_revokes_nothing", func(t *testing.T) {
		var r *Revocations
		if r.IsRevoked(sess("a", "alice", t0)) {
			t.Error("nil Revocations revoked a session")
		}
	})
}

func TestPrune(t *testing.T) {
	r := NewRevocations()
	r.RevokeSession("short", t0.Add(time.Hour))
	r.RevokeSession("long", t0.Add(10*time.Hour))
	r.RevokeSession("long", t0.Add(time.Minute)) // shorter until must not replace the longer one
	r.RevokeSession("forever", time.Time{})
	r.RevokeUserBefore("manual", t0)
	r.Apply([]Revocation{
		{Seq: 1, User: "rowshort", Before: t0, Until: t0.Add(time.Hour)},
		{Seq: 2, User: "rowlong", Before: t0, Until: t0.Add(10 * time.Hour)},
	})
	r.Prune(t0.Add(2 * time.Hour))
	type state struct{ Short, Long, Forever, Manual, RowShort, RowLong bool }
	got := state{
		Short:    r.IsRevoked(sess("short", "x", t0)),
		Long:     r.IsRevoked(sess("long", "x", t0)),
		Forever:  r.IsRevoked(sess("forever", "x", t0)),
		Manual:   r.IsRevoked(sess("z", "manual", t0.Add(-time.Second))),
		RowShort: r.IsRevoked(sess("z", "rowshort", t0.Add(-time.Second))),
		RowLong:  r.IsRevoked(sess("z", "rowlong", t0.Add(-time.Second))),
	}
	want := state{Long: true, Forever: true, Manual: true, RowLong: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after Prune (-want +got):\n%s", diff)
	}
	if s, u := r.Len(); s != 2 || u != 2 {
		t.Errorf("Len = %d sessions, %d users; want 2, 2", s, u)
	}
}

// fakeSource serves rows from a log and records the seq it was asked for.
type fakeSource struct {
	mu    sync.Mutex
	rows  []Revocation
	err   error
	asked []int64
	calls chan struct{}
}

func (f *fakeSource) RevocationsSince(ctx context.Context, seq int64) ([]Revocation, error) {
	f.mu.Lock()
	f.asked = append(f.asked, seq)
	var out []Revocation
	for _, r := range f.rows {
		if r.Seq > seq {
			out = append(out, r)
		}
	}
	err := f.err
	f.mu.Unlock()
	if f.calls != nil {
		select {
		case f.calls <- struct{}{}:
		case <-ctx.Done():
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (f *fakeSource) set(rows []Revocation, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows, f.err = rows, err
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	r := NewRevocations()
	src.set([]Revocation{
		{Seq: 2, User: "alice", Before: t0.Add(time.Minute), Until: t0.Add(13 * time.Hour)},
		{Seq: 1, SessionID: "s1", Until: t0.Add(time.Hour)},
	}, nil)
	if err := r.Sync(ctx, src); err != nil {
		t.Fatal(err)
	}
	if r.Seq() != 2 {
		t.Errorf("Seq = %d, want 2", r.Seq())
	}
	src.set(append(src.rows, Revocation{Seq: 3, SessionID: "s3", Until: t0.Add(time.Hour)}), nil)
	if err := r.Sync(ctx, src); err != nil {
		t.Fatal(err)
	}
	src.set(nil, errors.New("database is locked"))
	err := r.Sync(ctx, src)
	if err == nil || !strings.Contains(err.Error(), "after seq 3: database is locked") {
		t.Errorf("Sync error = %v, want it to name the seq and cause", err)
	}
	if diff := cmp.Diff([]int64{0, 2, 3}, src.asked); diff != "" {
		t.Errorf("seqs asked (-want +got):\n%s", diff)
	}
	for _, s := range []Session{sess("s1", "bob", t0), sess("s3", "bob", t0), sess("x", "alice", t0)} {
		if !r.IsRevoked(s) {
			t.Errorf("%+v not revoked after sync (and a failed sync must keep state)", s)
		}
	}
}

func TestPoll(t *testing.T) {
	src := &fakeSource{calls: make(chan struct{})}
	src.set(nil, errors.New("connection refused"))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	r := NewRevocations()
	r.RevokeSession("kept", time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Poll(ctx, src, time.Millisecond, logger)
		close(done)
	}()
	<-src.calls // first round fails
	<-src.calls // second round fails; the first's log line is written by now
	src.set([]Revocation{{Seq: 7, SessionID: "new", Until: t0.Add(time.Hour)}}, nil)
	<-src.calls // fetching the row
	<-src.calls // the previous round has been applied
	cancel()
	<-done
	if !r.IsRevoked(sess("new", "x", t0)) || r.Seq() != 7 {
		t.Errorf("poll did not apply row 7 (seq %d)", r.Seq())
	}
	if !r.IsRevoked(sess("kept", "x", t0)) {
		t.Error("poll errors dropped earlier revocations")
	}
	if !strings.Contains(logs.String(), "revocation poll failed") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("poll errors not logged; log:\n%s", logs.String())
	}
}

func TestRevocationsConcurrent(t *testing.T) {
	r := NewRevocations()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				id := string(rune('a'+i)) + string(rune('a'+j%26))
				r.RevokeSession(id, t0.Add(time.Duration(j)*time.Second))
				r.IsRevoked(sess(id, "u", t0))
				if j%50 == 0 {
					r.Prune(t0.Add(100 * time.Second))
				}
			}
		})
	}
	wg.Wait()
	r.Prune(t0.Add(time.Hour))
	if s, u := r.Len(); s != 0 || u != 0 {
		t.Errorf("after final Prune Len = %d, %d; want 0, 0", s, u)
	}
}
