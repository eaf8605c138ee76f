package socketio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
)

// Socket is one client's connection to one namespace.
type Socket struct {
	sess *session
	ns   string
	id   string
	auth json.RawMessage

	mu           sync.Mutex
	ready        bool             // CONNECT was answered: emits go straight out
	pending      [][]EnginePacket // emits made before that
	gone         bool
	goneWhy      string // why it ended, for a handler set after that
	onEvent      func(*Event)
	onDisconnect func(reason string)
	acks         map[int64]func(*Event)
	nextAck      int64
}

// ID is the socket's id (the "sid" of the CONNECT reply).
func (s *Socket) ID() string { return s.id }

// Namespace is the socket's namespace.
func (s *Socket) Namespace() string { return s.ns }

// Auth is the CONNECT payload (nil when the client sent none).
func (s *Socket) Auth() json.RawMessage { return s.auth }

// Handshake is what the request that opened the session carried.
func (s *Socket) Handshake() Handshake { return s.sess.handshake }

// SessionID is the Engine.IO session id.
func (s *Socket) SessionID() string { return s.sess.id }

// OnEvent sets the handler of the client's emits. It runs on the session's
// read path: it must not block for long (hand slow work to a goroutine).
func (s *Socket) OnEvent(f func(*Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEvent = f
}

// OnDisconnect sets what runs, once, when the socket ends for any reason;
// set on a socket that has ended already (a Disconnect while the namespace
// handler still ran: a token that expired as it connected), it runs now.
func (s *Socket) OnDisconnect(f func(reason string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone && s.onDisconnect == nil {
		go f(s.goneWhy)
	}
	s.onDisconnect = f
}

// isGone reports whether the socket has ended.
func (s *Socket) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// Event is one emit from the client.
type Event struct {
	// Name is the event name (a number's JSON text if the client used one).
	Name string
	// Args are the arguments after the name, as JSON; in a binary event,
	// {"_placeholder":true,"num":N} stands for Attachments[N].
	Args        []json.RawMessage
	Attachments [][]byte
	ack         func(args []json.RawMessage, attachments [][]byte) error
	once        sync.Once
}

// WantsAck reports whether the client waits for an acknowledgement.
func (e *Event) WantsAck() bool { return e.ack != nil }

// Ack answers the client's callback with args (JSON values); only the first
// call counts, and none is sent when the client asked for none.
func (e *Event) Ack(args ...json.RawMessage) error { return e.AckBinary(args, nil) }

// AckBinary answers with args and binary attachments.
func (e *Event) AckBinary(args []json.RawMessage, attachments [][]byte) error {
	if e.ack == nil {
		return nil
	}
	err := ErrClosed
	e.once.Do(func() { err = e.ack(args, attachments) })
	return err
}

// Emit sends an event whose arguments are marshalled to JSON.
func (s *Socket) Emit(event string, args ...any) error {
	raw := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("socketio: emit %s: %w", event, err)
		}
		raw[i] = b
	}
	return s.EmitBinary(event, raw, nil)
}

// WaitRoom blocks until the session's send queue is at most half full (or
// the session closes, or ctx ends): for senders that may wait, such as a
// replay of history, so that they keep pace with the client.
func (s *Socket) WaitRoom(ctx context.Context) error { return s.sess.waitRoom(ctx) }

// EmitBinary sends an event with JSON args and binary attachments (args
// reference them with Placeholder(n)). It never blocks: ErrOverflow means the
// session's queue was full and the session is being closed.
func (s *Socket) EmitBinary(event string, args []json.RawMessage, attachments [][]byte) error {
	name, _ := json.Marshal(event)
	return s.sendPacket(Packet{Type: PacketEvent, Namespace: s.ns, Data: jsonArray(name, args), Attachments: attachments})
}

// EncodeEvent is the text of an event on namespace ns with JSON args, for
// EmitEncoded: a push to many sockets is encoded once.
func EncodeEvent(ns, event string, args []json.RawMessage) []byte {
	name, _ := json.Marshal(event)
	return Packet{Type: PacketEvent, Namespace: ns, Data: jsonArray(name, args)}.EncodeString()
}

// EmitEncoded sends an event EncodeEvent encoded for this socket's
// namespace; text is not changed, and may be sent to other sockets too. It
// never blocks: ErrOverflow means the session's queue was full and the
// session is being closed.
func (s *Socket) EmitEncoded(text []byte) error {
	return s.sendEngine([]EnginePacket{{Type: EngineMessage, Data: text}})
}

// EmitWithAck sends an event and calls onAck with the client's answer.
func (s *Socket) EmitWithAck(event string, args []json.RawMessage, onAck func(*Event)) error {
	name, _ := json.Marshal(event)
	s.mu.Lock()
	s.nextAck++
	id := s.nextAck
	if s.acks == nil {
		s.acks = map[int64]func(*Event){}
	}
	s.acks[id] = onAck
	s.mu.Unlock()
	return s.sendPacket(Packet{Type: PacketEvent, Namespace: s.ns, ID: id, HasID: true, Data: jsonArray(name, args)})
}

// Disconnect ends the socket from the server side: the client gets a
// DISCONNECT packet and does not reconnect by itself.
func (s *Socket) Disconnect() {
	_ = s.sendPacket(Packet{Type: PacketDisconnect, Namespace: s.ns})
	s.sess.detach(s, "server namespace disconnect")
}

// CloseTransport cuts the underlying connection as a network failure would;
// the client reconnects (maybe to another node).
func (s *Socket) CloseTransport() { s.sess.close("transport closed by server", closeAbort) }

// Close ends the whole Engine.IO session cleanly; the client reconnects.
func (s *Socket) Close() { s.sess.close("forced close", closeGraceful) }

func jsonArray(first json.RawMessage, rest []json.RawMessage) json.RawMessage {
	n := len(first) + 2 + len(rest)
	for _, a := range rest {
		n += max(len(a), 4)
	}
	var b bytes.Buffer
	b.Grow(n) // one allocation: a push's array is a few hundred bytes
	b.WriteByte('[')
	if first != nil {
		b.Write(first)
	}
	for i, a := range rest {
		if i > 0 || first != nil {
			b.WriteByte(',')
		}
		if len(a) == 0 {
			a = json.RawMessage("null")
		}
		b.Write(a)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// sendPacket queues a packet and its attachments as one unit. Before the
// CONNECT reply has gone out, it is held so the client sees that reply first.
func (s *Socket) sendPacket(p Packet) error {
	if len(p.Attachments) > 0 {
		switch p.Type {
		case PacketEvent:
			p.Type = PacketBinaryEvent
		case PacketAck:
			p.Type = PacketBinaryAck
		}
	}
	ps := make([]EnginePacket, 0, 1+len(p.Attachments))
	ps = append(ps, EnginePacket{Type: EngineMessage, Data: p.EncodeString()})
	for _, a := range p.Attachments {
		ps = append(ps, EnginePacket{Type: EngineMessage, Data: a, Binary: true})
	}
	return s.sendEngine(ps)
}

// sendEngine queues a packet's Engine.IO messages, or holds them until the
// namespace is open.
func (s *Socket) sendEngine(ps []EnginePacket) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return ErrClosed
	}
	if !s.ready {
		if len(s.pending) >= s.sess.srv.cfg.SendQueue {
			go s.sess.close("send queue overflow", closeAbort)
			return ErrOverflow
		}
		s.pending = append(s.pending, slices.Clone(ps)) // ps stays the caller's
		return nil
	}
	return s.sess.send(ps...)
}

// open sends the CONNECT reply, then what was emitted before it.
func (s *Socket) open() error {
	reply, _ := json.Marshal(map[string]string{"sid": s.id})
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sess.send(EnginePacket{Type: EngineMessage, Data: Packet{Type: PacketConnect, Namespace: s.ns, Data: reply}.EncodeString()})
	for _, ps := range s.pending {
		if err != nil {
			break
		}
		err = s.sess.send(ps...)
	}
	s.pending, s.ready = nil, true
	return err
}

// ended runs the disconnect handler once, off the caller's goroutine (which
// may hold locks the handler takes).
func (s *Socket) ended(reason string) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone, s.goneWhy = true, reason
	f := s.onDisconnect
	s.mu.Unlock()
	if f != nil {
		go f(reason)
	}
}

func (s *Socket) event(p Packet) {
	all := p.arguments()
	ev := &Event{Name: eventName(all[0]), Args: all[1:], Attachments: p.Attachments}
	if p.HasID {
		id := p.ID
		ev.ack = func(args []json.RawMessage, attachments [][]byte) error {
			return s.sendPacket(Packet{Type: PacketAck, Namespace: s.ns, ID: id, HasID: true,
				Data: jsonArray(nil, args), Attachments: attachments})
		}
	}
	s.mu.Lock()
	f := s.onEvent
	if s.gone { // ended: its commands would run for a client that is not there
		f = nil
	}
	s.mu.Unlock()
	if f != nil {
		f(ev)
	}
}

func (s *Socket) ackReceived(p Packet) {
	s.mu.Lock()
	f := s.acks[p.ID]
	delete(s.acks, p.ID)
	s.mu.Unlock()
	if f == nil {
		return
	}
	var args []json.RawMessage
	_ = json.Unmarshal(p.Data, &args)
	f(&Event{Args: args, Attachments: p.Attachments})
}

func eventName(v json.RawMessage) string {
	var name string
	if json.Unmarshal(v, &name) == nil {
		return name
	}
	if f, err := strconv.ParseFloat(string(v), 64); err == nil {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return string(v)
}

// onMessage handles an Engine.IO message: a Socket.IO packet, or one
// attachment of the binary packet being reassembled. Malformed input closes
// the session, as the protocol says.
func (s *session) onMessage(p EnginePacket) {
	if s.partial != nil {
		if !p.Binary {
			s.close("parse error", closeByServer)
			return
		}
		s.partialBytes += len(p.Data)
		if s.partialBytes > s.srv.cfg.MaxPayload {
			s.close("payload too large", closeByServer)
			return
		}
		s.partial.Attachments = append(s.partial.Attachments, p.Data)
		if len(s.partial.Attachments) < s.partial.NumAttachments {
			return
		}
		pk := *s.partial
		s.partial, s.partialBytes = nil, 0
		if checkPlaceholders(pk.Data, pk.NumAttachments) != nil {
			s.close("parse error", closeByServer)
			return
		}
		s.dispatch(pk)
		return
	}
	if p.Binary {
		s.close("parse error", closeByServer)
		return
	}
	pk, err := DecodeString(p.Data)
	if err != nil {
		s.close("parse error", closeByServer)
		return
	}
	if pk.NumAttachments > 0 {
		s.partial = &pk
		return
	}
	if (pk.Type == PacketBinaryEvent || pk.Type == PacketBinaryAck) && checkPlaceholders(pk.Data, 0) != nil {
		s.close("parse error", closeByServer)
		return
	}
	s.dispatch(pk)
}

func (s *session) dispatch(p Packet) {
	switch p.Type {
	case PacketConnect:
		s.connect(p)
	case PacketDisconnect:
		if sock := s.socket(p.Namespace); sock != nil {
			s.detach(sock, "client namespace disconnect")
		}
	case PacketEvent, PacketBinaryEvent:
		if sock := s.socket(p.Namespace); sock != nil {
			sock.event(p)
		}
	case PacketAck, PacketBinaryAck:
		if sock := s.socket(p.Namespace); sock != nil {
			sock.ackReceived(p)
		}
	default: // CONNECT_ERROR goes server to client only
		s.close("parse error", closeByServer)
	}
}

func (s *session) socket(ns string) *Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sockets[ns]
}

// detach removes sock from the session (the session stays open).
func (s *session) detach(sock *Socket, reason string) {
	s.mu.Lock()
	if s.sockets[sock.ns] == sock {
		delete(s.sockets, sock.ns)
	}
	last := len(s.sockets) == 0 && s.joined
	if last {
		s.joined = false
	}
	s.mu.Unlock()
	sock.ended(reason)
	if last {
		s.unjoined()
	}
}

// MaxConnects bounds the CONNECT packets of one session: each verifies a
// token, registers a connection and writes log lines, so a client looping
// on CONNECT (or guessing tokens) is closed instead of served for free.
// Reconnecting clients open a new session, so a real client needs few.
const MaxConnects = 16

// connect admits a socket to a namespace, or answers CONNECT_ERROR.
func (s *session) connect(p Packet) {
	s.mu.Lock()
	s.connects++
	over := s.connects > MaxConnects
	s.mu.Unlock()
	if over {
		s.close("too many CONNECT packets", closeAbort)
		return
	}
	fn, ok := s.srv.cfg.Namespaces[p.Namespace]
	if !ok {
		s.connectError(p.Namespace, &ConnectError{Message: "Invalid namespace"})
		return
	}
	if old := s.socket(p.Namespace); old != nil {
		s.detach(old, "client namespace disconnect")
	}
	sock := &Socket{sess: s, ns: p.Namespace, id: newID(), auth: p.Data}
	if err := fn(sock, p.Data); err != nil {
		sock.ended("refused")
		s.connectError(p.Namespace, err)
		return
	}
	if sock.isGone() {
		// Disconnected while the handler ran (its token expired as it
		// connected): never admitted; the client connects again.
		s.connectError(p.Namespace, &ConnectError{Message: "disconnected while connecting"})
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sock.ended(s.reason)
		return
	}
	s.sockets[p.Namespace] = sock
	s.joined = true
	s.mu.Unlock()
	if sock.isGone() { // ended between the check above and its admission
		s.detach(sock, "ended while connecting")
		s.connectError(p.Namespace, &ConnectError{Message: "disconnected while connecting"})
		return
	}
	s.settle()
	if sock.open() != nil {
		return // the session is closing and will end the socket
	}
}

func (s *session) connectError(ns string, err error) {
	body := struct {
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}{Message: err.Error()}
	if ce, ok := err.(*ConnectError); ok {
		body.Data = ce.Data
	}
	data, _ := json.Marshal(body)
	_ = s.send(EnginePacket{Type: EngineMessage, Data: Packet{Type: PacketConnectError, Namespace: ns, Data: data}.EncodeString()})
}
