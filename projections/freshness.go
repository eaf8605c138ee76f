package projections

import (
	"context"
	"fmt"
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
func (s *Store) WaitOffset(ctx context.Context, p int32, offset int64, limit time.Duration) error {
	if limit == 0 {
		limit = 10 * time.Second
	}
	deadline := time.Now().Add(limit)
	delay := time.Millisecond
	for {
		off, err := s.ProjectedOffset(ctx, p)
		if err == nil && off >= offset {
			return nil
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
