package harness

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Violation kinds an Inbox records.
const (
	Duplicate  = "duplicate"
	OutOfOrder = "out_of_order"
	Foreign    = "foreign"
)

// Push is what the checks read of one push.
type Push struct {
	Type, Conv          string
	Seq                 int64
	MsgID, Sender, CMID string // message.new only
}

// ParsePush reads a push's conversation and, for a message, its ids; a
// push about a conversation as a whole names it in conversation.
func ParsePush(p wsclient.Push) Push {
	var d struct {
		ConversationID string `json:"conversation_id"`
		Conversation   *struct {
			ConversationID string `json:"conversation_id"`
		} `json:"conversation"`
		MessageID   string `json:"message_id"`
		SenderID    string `json:"sender_id"`
		ClientMsgID string `json:"client_msg_id"`
	}
	_ = json.Unmarshal(p.Data, &d)
	out := Push{Type: p.Type, Conv: d.ConversationID, Seq: p.Seq, MsgID: d.MessageID, Sender: d.SenderID, CMID: d.ClientMsgID}
	if out.Conv == "" && d.Conversation != nil {
		out.Conv = d.Conversation.ConversationID
	}
	return out
}

// Violation is one push a member should not have got, with enough context
// to find it in the logs.
type Violation struct {
	Kind   string
	Member string
	Conv   string
	Seq    int64
	Detail string
	At     time.Time
}

// Inbox is what one member received, checked as it arrives: a durable push
// of a conversation must be of one the member is in, its seq must be new
// and above everything already seen of the conversation (across
// reconnects: the sync position makes the server send only what is after
// it), and a message must come once, under one id per client_msg_id.
type Inbox struct {
	Name string

	mu         sync.Mutex
	pos        map[string]int64            // conv -> highest seq seen
	seen       map[string]map[int64]string // conv -> seq -> how it first came
	at         map[string]map[int64]string // conv -> seq -> message id
	byID       map[string]int64            // message id -> first seq
	count      map[string]int              // message id -> arrivals
	byCMID     map[string]string           // sender/cmid -> message id
	violations []Violation
}

// NewInbox is member name's empty inbox.
func NewInbox(name string) *Inbox {
	return &Inbox{Name: name, pos: map[string]int64{}, seen: map[string]map[int64]string{}, at: map[string]map[int64]string{},
		byID: map[string]int64{}, count: map[string]int{}, byCMID: map[string]string{}}
}

// Join makes the member one of conv, having seen it up to seq from.
func (in *Inbox) Join(conv string, from int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pos[conv] = from
	in.seen[conv] = map[int64]string{}
	in.at[conv] = map[int64]string{}
}

// Convs are the conversations the member joined.
func (in *Inbox) Convs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.seen))
	for c := range in.seen {
		out = append(out, c)
	}
	return out
}

// Positions are the highest seq seen per conversation: the next sync's.
func (in *Inbox) Positions() map[string]int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.pos)
}

// Add checks and records push p; via says how it came (connection,
// gateway) for the details. It returns the violation, if any.
func (in *Inbox) Add(p Push, via string, now time.Time) *Violation {
	in.mu.Lock()
	defer in.mu.Unlock()
	seen, member := in.seen[p.Conv]
	if !member {
		if p.Conv == "" {
			return nil
		}
		return in.violate(Foreign, p, now, "%s %s", p.Type, via)
	}
	if p.Seq == 0 {
		return nil // ephemeral (typing)
	}
	last := in.pos[p.Conv]
	var v *Violation
	switch {
	case seen[p.Seq] != "":
		return in.violate(Duplicate, p, now, "%s seq %d again %s; first as %s", p.Type, p.Seq, via, seen[p.Seq])
	case p.Seq < last:
		v = in.violate(OutOfOrder, p, now, "%s seq %d after seq %d %s", p.Type, p.Seq, last, via)
	default:
		in.pos[p.Conv] = p.Seq
	}
	seen[p.Seq] = p.Type + " " + via
	if p.Type == domain.PushMessageNew {
		v = firstOf(v, in.message(p, now))
	}
	return v
}

// message records a message.new at a seq not seen before: the same message
// id or client_msg_id at another seq is a duplicate.
func (in *Inbox) message(p Push, now time.Time) *Violation {
	var v *Violation
	in.count[p.MsgID]++
	if s, ok := in.byID[p.MsgID]; ok {
		v = in.violate(Duplicate, p, now, "message %s at seq %d, already received at seq %d", p.MsgID, p.Seq, s)
	} else {
		in.byID[p.MsgID] = p.Seq
	}
	k := p.Sender + "/" + p.CMID
	if id, ok := in.byCMID[k]; ok && id != p.MsgID {
		v = firstOf(v, in.violate(Duplicate, p, now, "client_msg_id %s as message %s (seq %d), already received as message %s (seq %d)",
			k, p.MsgID, p.Seq, id, in.byID[id]))
	} else if !ok {
		in.byCMID[k] = p.MsgID
	}
	in.at[p.Conv][p.Seq] = p.MsgID
	return v
}

func firstOf(a, b *Violation) *Violation {
	if a != nil {
		return a
	}
	return b
}

func (in *Inbox) violate(kind string, p Push, now time.Time, format string, a ...any) *Violation {
	v := Violation{Kind: kind, Member: in.Name, Conv: p.Conv, Seq: p.Seq, Detail: fmt.Sprintf(format, a...), At: now}
	in.violations = append(in.violations, v)
	return &v
}

// Has reports whether the member got message id at seq of conv.
func (in *Inbox) Has(conv string, seq int64, id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.at[conv][seq] == id && id != ""
}

// Count is how many times message id arrived.
func (in *Inbox) Count(id string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.count[id]
}

// Violations copies what the member should not have got.
func (in *Inbox) Violations() []Violation {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Violation(nil), in.violations...)
}
