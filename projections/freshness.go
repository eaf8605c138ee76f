package projections

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/domain"
)

// LogPosition tells where the log ends.
type LogPosition interface {
	Partition(conv string) (int32, error)
	HighWaterMark(ctx context.Context, partition int32) (int64, error)
}

// Freshness gives read-your-writes on the read model: it waits until the
// projector has applied every event of a conversation's partition that the
// log held when the wait began.
type Freshness struct {
	Store *Store
	Log   LogPosition
	// Max bounds a wait; past it the caller gets unavailable.
	Max time.Duration
}

// WaitProjected waits for conv's partition to be projected up to now.
func (f Freshness) WaitProjected(ctx context.Context, conv string) error {
	p, err := f.Log.Partition(conv)
	if err != nil {
		return err
	}
	hwm, err := f.Log.HighWaterMark(ctx, p)
	if err != nil {
		return err
	}
	return f.Store.WaitOffset(ctx, p, hwm, f.Max)
}

// WaitOffset waits until the projector has applied partition p up to (not
// including) offset, or limit (0: 10 s) passes; then it answers unavailable.
// While it waits it hurries the projectors (HurryChannel), which otherwise
// gather a batch for up to CHAT_PROJECTOR_WAIT.
func (s *Store) WaitOffset(ctx context.Context, p int32, offset int64, limit time.Duration) error {
	if limit == 0 {
		limit = 10 * time.Second
	}
	deadline := time.Now().Add(limit)
	delay := time.Millisecond
	var hurried time.Time
	for {
		off, err := s.ProjectedOffset(ctx, p)
		if err == nil && off >= offset {
			return nil
		}
		if err == nil && time.Since(hurried) >= hurryEvery {
			s.hurry(ctx)
			hurried = time.Now()
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: the read model is behind the log (partition %d at %d of %d)", domain.ErrUnavailable, p, off, offset)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", domain.ErrUnavailable, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// HurryChannel is the Postgres notification channel on which readers that
// wait for the read model ask the projectors to apply what they hold now.
const HurryChannel = "parley_projector_hurry"

// hurryEvery: a waiter asks again while it waits, since the records it
// waits for may have reached the projector after its first request.
const hurryEvery = 50 * time.Millisecond

// hurry notifies the projectors. A failure only costs the waiter the
// projector's batch wait.
func (s *Store) hurry(ctx context.Context) {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, HurryChannel); err != nil {
		slog.Default().Debug("hurrying the projector failed", "err", err)
	}
}

// ListenHurry calls hurry for every request of a waiting reader
// (HurryChannel) until ctx ends, on a connection of its own, listening
// again after a lost connection.
func (s *Store) ListenHurry(ctx context.Context, log *slog.Logger, hurry func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx, hurry)
		if ctx.Err() != nil {
			return
		}
		log.Warn("listening for hurried reads failed; the projector keeps its batch wait meanwhile", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listen(ctx context.Context, hurry func()) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Taken out of the pool for good: a connection that LISTENs is closed
	// after, never handed to another user.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // closing
	if _, err := conn.Exec(ctx, "LISTEN "+HurryChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		hurry()
	}
}
