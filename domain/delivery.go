package domain

import "encoding/json"

// Delivery is one push on its way to the gateway nodes: the frame to write,
// and who gets it. Seq is 0 for ephemeral pushes (typing), which are never
// deduplicated or replayed.
type Delivery struct {
	ConversationID string          `json:"c"`
	Seq            int64           `json:"s,omitempty"`
	Partition      int32           `json:"p"`
	Recipients     []string        `json:"r"`
	Frame          json.RawMessage `json:"f"`
	EventAtUnixMs  int64           `json:"t,omitempty"`
	// Kick lists users who must stop receiving this conversation at once.
	Kick []string `json:"k,omitempty"`
}

// PushFrame is the frame sent to clients for a push. Seq repeats the event's
// seq at frame level (0 for ephemeral pushes) so clients can track resume
// positions without knowing each push's data shape.
type PushFrame struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq,omitempty"`
	Data any    `json:"data"`
}
