package socketio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// PacketType is a Socket.IO packet type.
type PacketType byte

// Socket.IO v5 packet types.
const (
	PacketConnect      PacketType = 0
	PacketDisconnect   PacketType = 1
	PacketEvent        PacketType = 2
	PacketAck          PacketType = 3
	PacketConnectError PacketType = 4
	PacketBinaryEvent  PacketType = 5
	PacketBinaryAck    PacketType = 6
)

// Limits the decoder enforces on top of the engine's maxPayload.
const (
	maxAttachments = 64
	maxAckIDDigits = 15 // below 2^53: ids stay exact JavaScript numbers
)

// reservedEvents may not be emitted by a client (socket.io-parser).
var reservedEvents = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true,
	"disconnecting": true, "newListener": true, "removeListener": true,
}

// Packet is one Socket.IO packet. Data is the JSON payload as sent (nil when
// absent); in binary packets it holds {"_placeholder":true,"num":N} where
// Attachments[N] goes.
type Packet struct {
	Type        PacketType
	Namespace   string
	ID          int64 // ack id; valid when HasID
	HasID       bool
	Data        json.RawMessage
	Attachments [][]byte
	// NumAttachments is the count announced by a binary packet's header;
	// the decoder fills it, the encoder uses len(Attachments).
	NumAttachments int
	// args is an event's array as the decoder parsed it (validating it), so
	// that the socket does not parse it again.
	args []json.RawMessage
}

// EncodeString renders the packet's text part:
// <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>].
// Binary packets are followed by their attachments as binary messages.
func (p Packet) EncodeString() []byte {
	var b bytes.Buffer
	b.Grow(len(p.Data) + len(p.Namespace) + 24)
	b.WriteByte('0' + byte(p.Type))
	if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
		b.WriteString(strconv.Itoa(len(p.Attachments)))
		b.WriteByte('-')
	}
	if p.Namespace != "" && p.Namespace != "/" {
		b.WriteString(p.Namespace)
		b.WriteByte(',')
	}
	if p.HasID {
		b.WriteString(strconv.FormatInt(p.ID, 10))
	}
	b.Write(p.Data)
	return b.Bytes()
}

// DecodeString parses a packet's text part, as socket.io-parser v4 does,
// and validates its payload for its type. Binary packets come back with
// NumAttachments set and no attachments yet.
func DecodeString(s []byte) (Packet, error) {
	if len(s) == 0 {
		return Packet{}, ErrEmptyPacket
	}
	if s[0] < '0' || s[0] > '6' {
		return Packet{}, fmt.Errorf("%w %q", ErrUnknownType, s[0])
	}
	p := Packet{Type: PacketType(s[0] - '0'), Namespace: "/"}
	rest := s[1:]
	var err error
	if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
		if p.NumAttachments, rest, err = cutAttachments(rest); err != nil {
			return Packet{}, err
		}
	}
	if len(rest) > 0 && rest[0] == '/' {
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			p.Namespace, rest = string(rest), nil
		} else {
			p.Namespace, rest = string(rest[:end]), rest[end+1:]
		}
	}
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits > 0 {
		if digits > maxAckIDDigits {
			return Packet{}, fmt.Errorf("%w: ack id too long", ErrInvalidPacket)
		}
		p.ID, _ = strconv.ParseInt(string(rest[:digits]), 10, 64)
		p.HasID = true
		rest = rest[digits:]
	}
	if len(rest) > 0 {
		p.Data = json.RawMessage(rest)
	}
	if err := p.validate(); err != nil {
		return Packet{}, err
	}
	return p, nil
}

func cutAttachments(s []byte) (int, []byte, error) {
	dash := bytes.IndexByte(s, '-')
	if dash <= 0 || dash > 3 {
		return 0, nil, fmt.Errorf("%w: illegal attachments", ErrInvalidPacket)
	}
	n, err := strconv.Atoi(string(s[:dash]))
	if err != nil || n < 0 || n > maxAttachments {
		return 0, nil, fmt.Errorf("%w: illegal attachments", ErrInvalidPacket)
	}
	return n, s[dash+1:], nil
}

// validate applies socket.io-parser's isPayloadValid, a little stricter:
// events and acks must carry their array.
func (p *Packet) validate() error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrInvalidPacket, what) }
	if p.Type == PacketEvent || p.Type == PacketBinaryEvent {
		var err error
		p.args, err = eventArgs(p.Data) // parsing validates the JSON
		return err
	}
	if p.Data != nil && !json.Valid(p.Data) {
		return bad("payload is not JSON")
	}
	switch p.Type {
	case PacketConnect:
		if p.Data != nil && jsonKind(p.Data) != '{' {
			return bad("CONNECT payload must be an object")
		}
	case PacketDisconnect:
		if p.Data != nil {
			return bad("DISCONNECT takes no payload")
		}
	case PacketConnectError:
		if k := jsonKind(p.Data); k != '{' && k != '"' {
			return bad("CONNECT_ERROR payload must be an object or a string")
		}
	case PacketAck, PacketBinaryAck:
		if jsonKind(p.Data) != '[' {
			return bad("ACK payload must be an array")
		}
		if !p.HasID {
			return bad("ACK needs an id")
		}
	}
	return nil
}

// arguments is a decoded event's array: parsed by the decoder, or again
// here for a packet built otherwise.
func (p Packet) arguments() []json.RawMessage {
	if p.args != nil {
		return p.args
	}
	var all []json.RawMessage
	_ = json.Unmarshal(p.Data, &all) // validated by the decoder
	return all
}

// eventArgs parses and checks an event's array: a name (a string that is
// not reserved, or a number), then the arguments.
func eventArgs(data json.RawMessage) ([]json.RawMessage, error) {
	var args []json.RawMessage
	if jsonKind(data) != '[' || json.Unmarshal(data, &args) != nil || len(args) == 0 {
		return nil, fmt.Errorf("%w: EVENT payload must be a non-empty array", ErrInvalidPacket)
	}
	switch jsonKind(args[0]) {
	case '"':
		var name string
		_ = json.Unmarshal(args[0], &name)
		if reservedEvents[name] {
			return nil, fmt.Errorf("%w: %q is a reserved event name", ErrInvalidPacket, name)
		}
	case '0':
	default:
		return nil, fmt.Errorf("%w: event name must be a string or a number", ErrInvalidPacket)
	}
	return args, nil
}

// jsonKind is the first significant byte of a JSON value ('0' for numbers),
// or 0 when there is none.
func jsonKind(v json.RawMessage) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	switch c := v[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return '0'
	default:
		return c
	}
}

// checkPlaceholders verifies that every placeholder in data names an
// attachment that exists (socket.io-parser's reconstructPacket).
func checkPlaceholders(data json.RawMessage, n int) error {
	if !bytes.Contains(data, []byte(`"_placeholder"`)) {
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPacket, err)
	}
	return walkPlaceholders(v, n, 0)
}

func walkPlaceholders(v any, n, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%w: payload nested too deeply", ErrInvalidPacket)
	}
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := walkPlaceholders(e, n, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		if x["_placeholder"] == true {
			num, ok := x["num"].(float64)
			if !ok || num < 0 || int(num) >= n || num != float64(int(num)) {
				return fmt.Errorf("%w: illegal attachments", ErrInvalidPacket)
			}
			return nil
		}
		for _, e := range x {
			if err := walkPlaceholders(e, n, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// Placeholder is the JSON that stands for attachment num in a binary packet.
func Placeholder(num int) json.RawMessage {
	return json.RawMessage(`{"_placeholder":true,"num":` + strconv.Itoa(num) + `}`)
}
