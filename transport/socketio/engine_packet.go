// Package socketio is an Engine.IO v4 and Socket.IO v5 server on
// gorilla/websocket: both transports (HTTP long-polling and WebSocket, with
// the upgrade between them), heartbeats, namespaces, acks and binary
// attachments. It knows nothing about chat: a namespace's ConnectFunc decides
// what a socket does (transport/socketio/siochat maps Parley's commands onto
// it; cmd/sioconformance is the protocol test server).
//
// Sessions live on the node that created them. A request that reaches another
// node is forwarded to the owner, named in the session id (see Router), so
// long-polling needs no sticky sessions.
package socketio

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
)

// EngineType is an Engine.IO packet type.
type EngineType byte

// Engine.IO v4 packet types.
const (
	EngineOpen    EngineType = 0
	EngineClose   EngineType = 1
	EnginePing    EngineType = 2
	EnginePong    EngineType = 3
	EngineMessage EngineType = 4
	EngineUpgrade EngineType = 5
	EngineNoop    EngineType = 6
)

// recordSeparator separates packets in a long-polling payload.
const recordSeparator = '\x1e'

// Errors of the codecs; the connection that sent such input is closed.
var (
	ErrEmptyPacket   = errors.New("socketio: empty packet")
	ErrUnknownType   = errors.New("socketio: unknown packet type")
	ErrBadBase64     = errors.New("socketio: bad base64 in binary packet")
	ErrInvalidPacket = errors.New("socketio: invalid packet")
)

// EnginePacket is one Engine.IO packet. Binary is true only for message
// packets whose data is binary (a WebSocket binary frame, or "b"+base64 in a
// polling payload).
type EnginePacket struct {
	Type   EngineType
	Data   []byte
	Binary bool
}

// DecodeEngineText parses a text packet: a type digit followed by its data.
func DecodeEngineText(b []byte) (EnginePacket, error) {
	if len(b) == 0 {
		return EnginePacket{}, ErrEmptyPacket
	}
	if b[0] < '0' || b[0] > '6' {
		return EnginePacket{}, fmt.Errorf("%w %q", ErrUnknownType, b[0])
	}
	return EnginePacket{Type: EngineType(b[0] - '0'), Data: b[1:]}, nil
}

// DecodeEngineBinary wraps a WebSocket binary frame: always a message.
func DecodeEngineBinary(b []byte) EnginePacket {
	return EnginePacket{Type: EngineMessage, Data: b, Binary: true}
}

// EncodeText writes the packet as text: the form of WebSocket text frames
// and of non-binary packets in a polling payload.
func (p EnginePacket) EncodeText() []byte {
	out := make([]byte, 0, len(p.Data)+1)
	out = append(out, '0'+byte(p.Type))
	return append(out, p.Data...)
}

// appendPolling writes the packet as it appears in a polling payload.
func (p EnginePacket) appendPolling(out []byte) []byte {
	if p.Binary {
		out = append(out, 'b')
		return base64.StdEncoding.AppendEncode(out, p.Data)
	}
	out = append(out, '0'+byte(p.Type))
	return append(out, p.Data...)
}

// EncodePayload joins packets for one long-polling response.
func EncodePayload(ps []EnginePacket) []byte {
	n := 0
	for _, p := range ps {
		n += len(p.Data)*4/3 + 4
	}
	out := make([]byte, 0, n)
	for i, p := range ps {
		if i > 0 {
			out = append(out, recordSeparator)
		}
		out = p.appendPolling(out)
	}
	return out
}

// DecodePayload splits a long-polling request body into its packets. Any
// malformed packet fails the whole payload.
func DecodePayload(b []byte) ([]EnginePacket, error) {
	if len(b) == 0 {
		return nil, ErrEmptyPacket
	}
	n := bytes.Count(b, []byte{recordSeparator}) + 1
	ps := make([]EnginePacket, 0, n)
	for part := range bytes.SplitSeq(b, []byte{recordSeparator}) {
		p, err := decodePollingPacket(part)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func decodePollingPacket(b []byte) (EnginePacket, error) {
	if len(b) > 0 && b[0] == 'b' {
		data, err := base64.StdEncoding.AppendDecode(nil, b[1:])
		if err != nil {
			return EnginePacket{}, fmt.Errorf("%w: %v", ErrBadBase64, err)
		}
		return EnginePacket{Type: EngineMessage, Data: data, Binary: true}, nil
	}
	return DecodeEngineText(b)
}
