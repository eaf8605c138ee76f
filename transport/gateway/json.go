package gateway

import (
	"bytes"

	json "github.com/segmentio/encoding/json"
)

// marshal encodes a reply without HTML escaping: clients parse JSON, so
// "<" stays one byte instead of six ("\u003c"), which kept a page of such
// text six times its size in every send queue.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
