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
	// Prev is the seq of the delivery the same fan-out process published
	// before this one for the same partition and stream (0: unknown). A
	// gateway that did not see Prev has missed deliveries.
	Prev int64 `json:"v,omitempty"`
	// Node is the gateway node a delivery is for (its stream); not part of
	// the payload.
	Node string `json:"-"`
}

// PushFrame is the frame sent to clients for a push. Seq repeats the event's
// seq at frame level (0 for ephemeral pushes) so clients can track resume
// positions without knowing each push's data shape.
type PushFrame struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq,omitempty"`
	Data any    `json:"data"`
}

// SplitByNode appends to out one delivery per gateway node that holds a
// recipient of d (nodes: user to node ids), each naming only that node's
// recipients, in the order the recipients name the nodes.
//
// A delivery reaches few nodes, so its own entries of out are searched
// instead of a map made per delivery (the fan-out's hottest allocation).
func SplitByNode(d Delivery, nodes map[string][]string, out []Delivery) []Delivery {
	start := len(out)
	for _, u := range d.Recipients {
		for _, n := range nodes[u] {
			i := start
			for i < len(out) && out[i].Node != n {
				i++
			}
			if i == len(out) {
				nd := d
				nd.Node, nd.Recipients = n, nil
				out = append(out, nd)
			}
			out[i].Recipients = append(out[i].Recipients, u)
		}
	}
	return out
}
