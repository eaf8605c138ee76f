package fanoutbus

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/domain"
)

// The bus payload: a compact binary header and the push frame as is, so a
// gateway decodes a delivery without parsing JSON (the JSON envelope of
// earlier versions cost every gateway a full parse of every frame):
//
//	version byte (1)
//	uvarint partition | varint seq | varint prev | varint event time (unix ms)
//	uvarint len + conversation id
//	uvarint count, then per recipient uvarint len + user id
//	the frame (the rest)
const wireVersion = 1

// maxRecipients bounds a decoded delivery (a group holds at most a few
// thousand members).
const maxRecipients = 1 << 16

var errPayload = errors.New("fanoutbus: malformed delivery")

// Encode appends d's wire form to b.
func Encode(b []byte, d domain.Delivery) []byte {
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(uint32(d.Partition)))
	b = binary.AppendVarint(b, d.Seq)
	b = binary.AppendVarint(b, d.Prev)
	b = binary.AppendVarint(b, d.EventAtUnixMs)
	b = appendString(b, d.ConversationID)
	b = binary.AppendUvarint(b, uint64(len(d.Recipients)))
	for _, r := range d.Recipients {
		b = appendString(b, r)
	}
	return append(b, d.Frame...)
}

// encodedCap bounds the length of d's wire form, so that Encode allocates
// once.
func encodedCap(d domain.Delivery) int {
	n := 1 + 4*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(d.ConversationID) + binary.MaxVarintLen64 + len(d.Frame)
	for _, r := range d.Recipients {
		n += binary.MaxVarintLen64 + len(r)
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode parses a wire form; the frame shares p's memory.
func Decode(p []byte) (domain.Delivery, error) {
	var d domain.Delivery
	if len(p) == 0 || p[0] != wireVersion {
		return d, fmt.Errorf("%w: unknown version", errPayload)
	}
	r := reader{b: p[1:]}
	part := r.uvarint()
	d.Seq, d.Prev, d.EventAtUnixMs = r.varint(), r.varint(), r.varint()
	d.ConversationID = r.string()
	n := r.uvarint()
	if r.err != nil || part > 1<<31-1 || n > maxRecipients || n > uint64(len(r.b)) {
		return domain.Delivery{}, fmt.Errorf("%w: bad header", errPayload)
	}
	d.Partition = int32(part)
	d.Recipients = make([]string, n)
	for i := range d.Recipients {
		d.Recipients[i] = r.string()
	}
	if r.err != nil {
		return domain.Delivery{}, r.err
	}
	d.Frame = r.b
	return d, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated", errPayload)
	}
	r.b = nil
}
