package gateway

import (
	"bytes"
	"fmt"
	"strconv"

	json "github.com/segmentio/encoding/json"
)

// Push is a push frame {"type","seq","data"} split into its parts, data
// left as it is.
type Push struct {
	Type string
	Seq  int64
	Data json.RawMessage
}

// SplitPush splits a push frame. Frames come from domain.EncodePush, whose
// field order is fixed, so the parts are found without parsing data (a
// full parse per recipient was most of a Socket.IO push's cost); any other
// layout falls back to a JSON parse.
func SplitPush(frame []byte) (Push, error) {
	if p, ok := splitCanonical(frame); ok {
		return p, nil
	}
	var p struct {
		Type string          `json:"type"`
		Seq  int64           `json:"seq"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(frame, &p); err != nil {
		return Push{}, fmt.Errorf("push frame: %w", err)
	}
	if p.Type == "" {
		return Push{}, fmt.Errorf("push frame without a type")
	}
	return Push(p), nil
}

func splitCanonical(f []byte) (Push, bool) {
	rest, ok := bytes.CutPrefix(f, []byte(`{"type":"`))
	if !ok {
		return Push{}, false
	}
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return Push{}, false
	}
	p := Push{Type: string(rest[:i])}
	rest = rest[i+1:]
	if r, ok := bytes.CutPrefix(rest, []byte(`,"seq":`)); ok {
		j := 0
		for j < len(r) && r[j] >= '0' && r[j] <= '9' {
			j++
		}
		seq, err := strconv.ParseInt(string(r[:j]), 10, 64)
		if err != nil {
			return Push{}, false
		}
		p.Seq, rest = seq, r[j:]
	}
	data, ok := bytes.CutPrefix(rest, []byte(`,"data":`))
	if !ok || len(data) < 2 || data[len(data)-1] != '}' {
		return Push{}, false
	}
	p.Data = data[:len(data)-1]
	return p, true
}
