package kafkalog

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/parley-chat/parley/domain"
)

// GroupLag returns, per partition of the topic, how many events lie between
// the end of the log and the group's committed position. A partition the
// group has never committed counts from the oldest retained event (Parley's
// groups start at the oldest offset).
func (l *Log) GroupLag(ctx context.Context, group string) (map[int32]int64, error) {
	hwms, err := l.HighWaterMarks(ctx)
	if err != nil {
		return nil, err
	}
	// The admin shares the client; it must not be closed (that would close
	// the producer's client too).
	admin, err := sarama.NewClusterAdminFromClient(l.client)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka admin: %v", domain.ErrUnavailable, err)
	}
	parts := make([]int32, 0, len(hwms))
	for p := range hwms {
		parts = append(parts, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{l.cfg.Topic: parts})
	if err != nil {
		return nil, fmt.Errorf("%w: kafka group offsets %s: %v", domain.ErrUnavailable, group, err)
	}
	lag := make(map[int32]int64, len(hwms))
	for p, hwm := range hwms {
		committed := int64(-1)
		if b := resp.GetBlock(l.cfg.Topic, p); b != nil {
			committed = b.Offset
		}
		if committed < 0 {
			if committed, err = l.client.GetOffset(l.cfg.Topic, p, sarama.OffsetOldest); err != nil {
				return nil, fmt.Errorf("%w: kafka oldest offset: %v", domain.ErrUnavailable, err)
			}
		}
		lag[p] = max(hwm-committed, 0)
	}
	return lag, nil
}
