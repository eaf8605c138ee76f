package kafkalog

import (
	"fmt"

	json "github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
)

func encodeEvent(e domain.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.Type, err)
	}
	return b, nil
}
