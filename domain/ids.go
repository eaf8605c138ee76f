package domain

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// Limits of the client contract.
const (
	MaxIDLen          = 64
	MaxBodyBytes      = 8192
	MaxTitleBytes     = 200
	MaxGroupMembers   = 1000
	DefaultHistoryLim = 50
	MaxHistoryLimit   = 200
)

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// ValidateID checks an identifier: 1-64 chars of [A-Za-z0-9_.-].
func ValidateID(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is required", ErrBadRequest, field)
	}
	if len(v) > MaxIDLen {
		return fmt.Errorf("%w: %s must be at most %d characters", ErrBadRequest, field, MaxIDLen)
	}
	for i := 0; i < len(v); i++ {
		if !isIDByte(v[i]) {
			return fmt.Errorf("%w: %s may contain only [A-Za-z0-9_.-]", ErrBadRequest, field)
		}
	}
	return nil
}

// ValidateUserID checks a user id (the JWT sub).
func ValidateUserID(field, v string) error { return ValidateID(field, v) }

// ValidateClientMsgID checks a client_msg_id: 1-64 chars, any printable
// UTF-8 (clients often use UUIDs, but we do not force a format).
func ValidateClientMsgID(v string) error {
	if v == "" {
		return fmt.Errorf("%w: client_msg_id is required", ErrBadRequest)
	}
	if err := ValidateText("client_msg_id", v); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(v); n > MaxIDLen {
		return fmt.Errorf("%w: client_msg_id must be 1-%d characters", ErrBadRequest, MaxIDLen)
	}
	return nil
}

// ValidateBody checks a message body: 1-8192 bytes of valid UTF-8.
func ValidateBody(v string) error {
	if v == "" {
		return fmt.Errorf("%w: body must not be empty", ErrBadRequest)
	}
	if len(v) > MaxBodyBytes {
		return fmt.Errorf("%w: body must be at most %d bytes, got %d", ErrTooLarge, MaxBodyBytes, len(v))
	}
	return ValidateText("body", v)
}

// ValidateText checks a client string the stores must hold: valid UTF-8
// without U+0000, which Postgres text and jsonb cannot store (an event
// carrying one would stop every read model that applies it).
func ValidateText(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s must be valid UTF-8", ErrBadRequest, field)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%w: %s must not contain U+0000", ErrBadRequest, field)
	}
	return nil
}

// MaxEmojiBytes bounds a reaction's emoji.
const MaxEmojiBytes = 32

// Reaction bounds: one user's different reactions to one message, and a
// message's different emoji. Unbounded, one user adding a new character
// every few seconds grew the message in every page, push and reply that
// holds it, past the 8 MiB a connection queues: every member reading that
// page was cut off, for good.
const (
	MaxReactionsPerUser = 20
	MaxEmojiPerMessage  = 50
)

// ValidateEmoji checks a reaction: one grapheme cluster (a flag, a skin
// tone or a family sequence is one) of at most MaxEmojiBytes, valid text,
// not a space or a control character.
func ValidateEmoji(v string) error {
	if err := ValidateText("emoji", v); err != nil {
		return err
	}
	if v == "" || len(v) > MaxEmojiBytes || uniseg.GraphemeClusterCount(v) != 1 {
		return fmt.Errorf("%w: emoji must be one character (grapheme cluster) of at most %d bytes", ErrBadRequest, MaxEmojiBytes)
	}
	if r, _ := utf8.DecodeRuneInString(v); unicode.IsSpace(r) || unicode.IsControl(r) {
		return fmt.Errorf("%w: emoji must not be a space or a control character", ErrBadRequest)
	}
	return nil
}

// ValidateSeq checks a seq position given by a client.
func ValidateSeq(field string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%w: %s must be >= 0", ErrBadRequest, field)
	}
	return nil
}

// NewID returns a random identifier with a prefix, e.g. "m_3f2a...".
func NewID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// SendMessageID is the message id of sender's send of clientMsgID in conv,
// claimed in period (the claim's time divided by the idempotency window):
// the same send gets the same id on every node and every retry, so the read
// model finds a send by its message id alone, and a send produced again
// (after Redis lost its record) repeats its id, which the read model
// collapses. A resend after the window falls in a later period: a new
// message, as the window says.
func SendMessageID(conv, sender, clientMsgID string, period int64) string {
	h := sha256.Sum256([]byte(conv + "\x00" + sender + "\x00" + clientMsgID + "\x00" + strconv.FormatInt(period, 10)))
	return "m_" + hex.EncodeToString(h[:16])
}

// DirectConversationID is the id of the direct conversation of two users:
// the same pair, in either order, always gets the same id.
func DirectConversationID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d_" + hex.EncodeToString(h[:16])
}

// IsDirectID reports whether a conversation id is a direct conversation's.
func IsDirectID(id string) bool { return len(id) > 2 && id[:2] == "d_" }
