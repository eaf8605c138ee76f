package commands

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/domain"
)

// A send's final idempotency record is kept compact, because Redis holds
// one per message for the whole idempotency window (docs/scaling.md):
//
//	c:<message_id>|<seq>|<sent_at unix ns>|<sha-256 of the body, 16 bytes, base64url>
//
// The key already names conversation, sender and client_msg_id. A resend
// carrying the first body (and reply_to) is answered from the record alone;
// one with another gets the first message from the read model. Records written
// before ("d:<message json>") are still read.
const compactPrefix = "c:"

type idemRecord struct {
	messageID string
	seq       int64
	sentAt    time.Time
	bodyHash  string
}

func bodyHash(body string) string {
	sum := sha256.Sum256([]byte(body))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// contentHash is what a resend must repeat to be answered from the record:
// the body, and the reply_to if any (records of messages without one keep
// the plain body hash of earlier versions).
func contentHash(body, replyTo string) string {
	if replyTo == "" {
		return bodyHash(body)
	}
	return bodyHash(body + "\x00reply_to\x00" + replyTo)
}

func encodeRecord(m domain.Message) string {
	return compactPrefix + m.MessageID + "|" + strconv.FormatInt(m.Seq, 10) + "|" +
		strconv.FormatInt(m.SentAt.UnixNano(), 10) + "|" + contentHash(m.Body, m.ReplyTo)
}

func decodeRecord(v string) (idemRecord, error) {
	parts := strings.Split(strings.TrimPrefix(v, compactPrefix), "|")
	if !strings.HasPrefix(v, compactPrefix) || len(parts) != 4 {
		return idemRecord{}, fmt.Errorf("idempotency record: want %s<id>|<seq>|<ns>|<hash>, got %d fields", compactPrefix, len(parts))
	}
	seq, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || seq < 1 {
		return idemRecord{}, fmt.Errorf("idempotency record: bad seq %q", parts[1])
	}
	ns, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return idemRecord{}, fmt.Errorf("idempotency record: bad time %q", parts[2])
	}
	if parts[0] == "" || len(parts[3]) != 22 {
		return idemRecord{}, fmt.Errorf("idempotency record: bad message id or body hash")
	}
	return idemRecord{messageID: parts[0], seq: seq, sentAt: time.Unix(0, ns).UTC(), bodyHash: parts[3]}, nil
}

// message rebuilds the first message for a resend of c by actor, if c
// carries the first body.
func (r idemRecord) message(actor string, c SendMessage) (domain.Message, bool) {
	if contentHash(c.Body, c.ReplyTo) != r.bodyHash {
		return domain.Message{}, false
	}
	return domain.Message{ConversationID: c.ConversationID, MessageID: r.messageID, Seq: r.seq, SenderID: actor,
		ClientMsgID: c.ClientMsgID, Body: c.Body, ReplyTo: c.ReplyTo, SentAt: r.sentAt}, true
}
