package socketio

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of sending on a session.
var (
	ErrClosed   = errors.New("socketio: connection closed")
	ErrOverflow = errors.New("socketio: send queue overflow: client reads too slowly")
)

// closeMode says how a session ends on its transport.
type closeMode int

const (
	// closeByServer: a pending poll gets what is queued and a close packet;
	// a WebSocket writes what is queued, then a close frame.
	closeByServer closeMode = iota
	// closeByClient: the client sent close; a pending poll, or the next poll
	// if it comes at once, gets a noop.
	closeByClient
	// closeAbort: the transport is cut; nothing more is written.
	closeAbort
	// closeGraceful: as closeByServer, and with no poll pending the session
	// lingers briefly so the client's next poll still gets what is queued.
	closeGraceful
)

// Handshake is what the session keeps of the request that opened it: not
// its headers or query, which a client could make a megabyte each and the
// session would hold for its whole life (authentication reads the CONNECT
// packet's auth, not headers).
type Handshake struct {
	RemoteAddr string
	Time       time.Time
}

// session is one Engine.IO connection, on long-polling or WebSocket.
type session struct {
	srv       *Server
	id        string
	handshake Handshake

	mu     sync.Mutex
	closed bool
	mode   closeMode
	reason string
	buf    []EnginePacket
	// bufBytes is the data held in buf (set to 0 wherever buf is taken).
	bufBytes int
	qstats   queueStats    // peaks, for QueueStats
	changed  chan struct{} // closed and replaced when buf or the state changes and someone waits
	waiting  bool          // someone took changed to wait on (wait)
	// kick wakes the WebSocket writer (its one reader) on every signal,
	// without the channel made and closed that waking through changed costs.
	kick   chan struct{}
	ws     *wsConn // the WebSocket the session runs on, once it does
	probe  *wsConn // a WebSocket probing for the upgrade
	probed bool    // the probe was answered: pending polls are released
	// writing: the writer holds packets taken from buf and not yet written;
	// a sender must not write past them (writeNow).
	writing bool
	// stalled: writeNow left part of a frame for the writer to finish.
	stalled bool
	polling bool // a GET is waiting
	// inflight: the bytes a GET took from buf and is still writing (0:
	// none). Another GET meanwhile is an overlapping poll, and a sender
	// waits for room while they are not yet the client's.
	inflight int
	posting  bool
	sockets  map[string]*Socket
	joined   bool // a namespace is joined now (connect timeout)
	connects int  // CONNECT packets received (MaxConnects)
	// lingering: closed, but kept for one last poll to collect the end.
	lingering bool
	// pingDue is when the outstanding ping was due; a pong moves it one
	// interval on. Past pingDue+pingTimeout the peer is gone, whatever the
	// timers' jitter.
	pingDue     time.Time
	pingPending bool

	pong      chan struct{}
	done      chan struct{}
	flushed   chan struct{} // closed once nothing more will be written
	flushOnce sync.Once
	connTimer *time.Timer
	// counted: the session is in the server's pending count (it has no
	// namespace joined, and is not closed).
	counted atomic.Bool
	// waitingAt is the session's place among the server's pending
	// sessions (srv.waiting, under srv.mu).
	waitingAt *list.Element

	// in serializes inbound packets: a POST and the upgraded WebSocket can
	// overlap for a moment during the upgrade.
	in sync.Mutex
	// handling: a packet's handler runs on the reader. A pong may wait
	// behind it, so the heartbeat does not count that time against the
	// client (handlers are the server's commands, bounded by their own
	// timeouts).
	handling     atomic.Bool
	partial      *Packet
	partialBytes int
}

func (srv *Server) newSession(r *http.Request, ws bool) *session {
	s := &session{
		srv: srv, id: srv.sessionID(),
		handshake: Handshake{RemoteAddr: r.RemoteAddr, Time: time.Now()},
		changed:   make(chan struct{}), sockets: map[string]*Socket{},
		pong: make(chan struct{}, 1), kick: make(chan struct{}, 1), done: make(chan struct{}), flushed: make(chan struct{}),
	}
	upgrades := []string{"websocket"}
	if ws {
		upgrades = []string{}
	}
	open, _ := json.Marshal(map[string]any{
		"sid": s.id, "upgrades": upgrades,
		"pingInterval": srv.cfg.PingInterval.Milliseconds(), "pingTimeout": srv.cfg.PingTimeout.Milliseconds(),
		"maxPayload": srv.cfg.MaxPayload,
	})
	s.buf = []EnginePacket{{Type: EngineOpen, Data: open}}
	s.pingDue = s.handshake.Time.Add(srv.cfg.PingInterval)
	// Before the session is published: a concurrent eviction or drain
	// closes it, which stops the timer.
	s.connTimer = time.AfterFunc(srv.cfg.ConnectTimeout, s.connectTimeout)
	srv.mu.Lock()
	srv.sessions[s.id] = s
	srv.mu.Unlock()
	srv.pending.Add(1)
	s.counted.Store(true)
	srv.wait(s)
	go s.heartbeat()
	return s
}

// signal wakes whoever waits on the session; callers hold mu. The
// WebSocket writer is kicked through a buffered channel; the others (a
// sender waiting for room, a pending poll) share changed, which is made
// and closed only when one of them waits: doing it for every queued push
// cost 5 % of a gateway's CPU at 1 000 msg/s (docs/benchmarks.md,
// "Session 10").
func (s *session) signal() {
	select {
	case s.kick <- struct{}{}:
	default: // a kick is pending already
	}
	s.broadcast()
}

// broadcast wakes the waiters on changed, if any; callers hold mu.
func (s *session) broadcast() {
	if s.waiting {
		close(s.changed)
		s.changed = make(chan struct{})
		s.waiting = false
	}
}

// wait returns the channel the next signal closes; callers hold mu.
func (s *session) wait() <-chan struct{} {
	s.waiting = true
	return s.changed
}

// waitRoom blocks until the send queue is at most half full: a sender
// that can wait (a sync replaying history) keeps pace with the client
// instead of overflowing the queue. It fails when the session closes or
// ctx ends.
func (s *session) waitRoom(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if len(s.buf) < max(1, s.srv.cfg.SendQueue/2) && s.bufBytes+s.inflight < s.srv.cfg.SendQueueBytes/2 {
			s.mu.Unlock()
			return nil
		}
		ch := s.wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send queues packets for the client without blocking.
func (s *session) send(ps ...EnginePacket) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	n := 0
	for _, p := range ps {
		n += len(p.Data)
	}
	if len(s.buf)+len(ps) > s.srv.cfg.SendQueue || s.bufBytes+n > s.srv.cfg.SendQueueBytes {
		s.mu.Unlock()
		// Asynchronous: the caller may hold locks that closing takes.
		go s.close("send queue overflow", closeAbort)
		return ErrOverflow
	}
	if len(ps) == 1 && s.writeNow(ps[0]) { // unlocks mu
		return nil
	}
	s.buf = append(s.buf, ps...)
	s.bufBytes += n
	s.qstats.queued(len(s.buf), s.bufBytes)
	s.signal()
	s.mu.Unlock()
	return nil
}

// writeNow writes p on the WebSocket at once when nothing is ahead of it
// (no queued packet, the writer idle, no unfinished frame) and the
// connection is free; it unlocks mu when it does and reports whether it
// did. The sender's write never waits for the socket: what the kernel does
// not take is finished by the writer. Callers hold mu.
func (s *session) writeNow(p EnginePacket) bool {
	c := s.ws
	if c == nil || len(s.buf) > 0 || s.writing || s.stalled || !c.wmu.TryLock() {
		return false
	}
	if !c.canWriteNow(p) {
		c.wmu.Unlock()
		return false
	}
	s.qstats.direct++
	s.mu.Unlock()
	stalled, err := c.writeNow(p)
	c.wmu.Unlock()
	switch {
	case err != nil:
		// Asynchronous, as for an overflow: the caller may hold locks that
		// closing takes.
		go s.close("transport error", closeAbort)
	case stalled:
		s.mu.Lock()
		s.stalled = true
		s.qstats.unfinished++
		s.signal()
		s.mu.Unlock()
	}
	return true
}

// close ends the session once; its sockets learn the reason.
func (s *session) close(reason string, mode closeMode) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.mode, s.reason = true, mode, reason
	if mode == closeAbort {
		s.buf, s.bufBytes = nil, 0
	}
	s.signal()
	sockets := s.sockets
	s.sockets = map[string]*Socket{}
	probe, ws, polling := s.probe, s.ws, s.polling
	s.lingering = (mode == closeByClient || mode == closeGraceful) && ws == nil && !polling
	lingering := s.lingering
	s.mu.Unlock()

	if lingering {
		time.AfterFunc(min(s.srv.cfg.PingTimeout, 2*time.Second), s.endLinger)
	} else {
		s.srv.remove(s.id)
	}
	close(s.done)
	s.connTimer.Stop()
	s.settle()
	if probe != nil {
		probe.conn.Close()
	}
	if ws != nil && mode == closeAbort {
		ws.conn.Close()
	}
	if ws == nil && !polling && !lingering {
		s.markFlushed() // no one to write to
	}
	for _, sock := range sockets {
		sock.ended(reason)
	}
	s.srv.cfg.Log.Debug("socket.io session closed", "sid", SIDForLog(s.id), "reason", reason)
}

// endLinger forgets a closed session whose last poll did not come.
func (s *session) endLinger() {
	s.mu.Lock()
	was := s.lingering
	s.lingering = false
	s.mu.Unlock()
	if was {
		s.srv.remove(s.id)
		s.markFlushed()
	}
}

// finalLocked is what the last poll of a closed session gets; nil means cut
// the connection.
func (s *session) finalLocked() []EnginePacket {
	switch s.mode {
	case closeAbort:
		return nil
	case closeByClient:
		return []EnginePacket{{Type: EngineNoop}}
	default:
		return append(s.buf, EnginePacket{Type: EngineClose})
	}
}

func (s *session) markFlushed() { s.flushOnce.Do(func() { close(s.flushed) }) }

// settle takes the session out of the pending count.
func (s *session) settle() {
	if s.counted.CompareAndSwap(true, false) {
		s.srv.pending.Add(-1)
		s.srv.unwait(s)
	}
}

// unjoined makes a session whose last namespace socket left pending again:
// it must CONNECT within the connect timeout (a client refreshing its
// token does), or it is closed, so that a joined-then-left session is
// bounded as a new one is, not kept as long as it answers pings. Past
// MaxPendingSessions it is closed at once.
func (s *session) unjoined() {
	s.mu.Lock()
	if s.closed || s.joined {
		s.mu.Unlock()
		return
	}
	full := s.srv.cfg.MaxPendingSessions > 0 && s.srv.pending.Load() >= int64(s.srv.cfg.MaxPendingSessions)
	if !full && s.counted.CompareAndSwap(false, true) {
		s.srv.pending.Add(1)
		s.srv.wait(s)
		s.connTimer.Reset(s.srv.cfg.ConnectTimeout)
	}
	s.mu.Unlock()
	if full {
		s.close("no namespace joined", closeGraceful)
	}
}

func (s *session) connectTimeout() {
	s.mu.Lock()
	joined := s.joined
	s.mu.Unlock()
	if !joined {
		s.close("connect timeout", closeByServer)
	}
}

// heartbeat pings every pingInterval and closes the session when a pong
// does not follow within pingTimeout (Engine.IO v4: the server pings).
func (s *session) heartbeat() {
	t := time.NewTimer(s.srv.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.pingPending = true
		deadline := s.pingDue.Add(s.srv.cfg.PingTimeout)
		s.mu.Unlock()
		if s.send(EnginePacket{Type: EnginePing}) != nil {
			return
		}
		t.Reset(time.Until(deadline))
		if !s.awaitPong(t) {
			return
		}
		s.mu.Lock()
		next := time.Until(s.pingDue)
		s.mu.Unlock()
		t.Reset(next)
	}
}

// awaitPong waits on t for the pong to the ping just sent; false: the
// session ended, or the peer is gone and the session is closed.
func (s *session) awaitPong(t *time.Timer) bool {
	for {
		select {
		case <-s.done:
			return false
		case <-s.pong:
			if !t.Stop() {
				<-t.C
			}
			return true
		case <-t.C:
			if !s.handling.Load() {
				s.close("ping timeout", closeByServer)
				return false
			}
			t.Reset(s.srv.cfg.PingTimeout) // the pong may wait behind the handler
		}
	}
}

// gotPong records the answer to the outstanding ping (others are ignored).
func (s *session) gotPong() {
	s.mu.Lock()
	ok := s.pingPending
	if ok {
		s.pingPending = false
		s.pingDue = time.Now().Add(s.srv.cfg.PingInterval)
	}
	s.mu.Unlock()
	if ok {
		select {
		case s.pong <- struct{}{}:
		default:
		}
	}
}

// expired closes a session whose peer missed its ping deadline, even if
// the heartbeat timer has not fired yet.
func (s *session) expired() bool {
	s.mu.Lock()
	dead := !s.closed && !s.handling.Load() && time.Now().After(s.pingDue.Add(s.srv.cfg.PingTimeout))
	s.mu.Unlock()
	if dead {
		s.close("ping timeout", closeByServer)
	}
	return dead
}

// receive handles one packet from the client; false once the session ended.
func (s *session) receive(p EnginePacket) bool {
	s.in.Lock()
	defer s.in.Unlock()
	if s.isClosed() {
		return false
	}
	switch p.Type {
	case EnginePong:
		s.gotPong()
	case EngineMessage:
		s.handling.Store(true)
		s.onMessage(p)
		s.handling.Store(false)
	case EngineClose:
		s.close("transport close", closeByClient)
	case EngineNoop, EngineUpgrade:
	default: // open, and ping: Engine.IO v4 heartbeats go server to client
		s.close("parse error", closeByServer)
	}
	return !s.isClosed()
}

func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// poll answers a long-polling GET with what is queued, waiting until there
// is something.
func (s *session) poll(w http.ResponseWriter, r *http.Request) {
	if s.expired() {
		writeEngineError(w, http.StatusBadRequest, errUnknownSID)
		return
	}
	s.mu.Lock()
	if s.closed && s.lingering {
		s.lingering = false
		out := s.finalLocked()
		s.buf, s.bufBytes = nil, 0
		s.mu.Unlock()
		s.srv.remove(s.id)
		s.markFlushed()
		writePayload(w, out)
		return
	}
	if s.closed || s.ws != nil {
		s.mu.Unlock()
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	if s.polling || s.inflight > 0 {
		s.mu.Unlock()
		s.close("overlapping polls", closeByServer)
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	s.polling = true
	for !s.closed && len(s.buf) == 0 && !s.probed && s.ws == nil {
		ch := s.wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			s.mu.Lock()
			s.polling = false
			closed := s.closed
			s.mu.Unlock()
			if closed {
				s.markFlushed()
			}
			return
		}
		s.mu.Lock()
	}
	out, closed := s.buf, s.closed
	if closed {
		out = s.finalLocked()
	}
	s.qstats.took(len(s.buf), s.bufBytes)
	s.inflight = max(s.bufBytes, 1)
	s.buf, s.bufBytes = nil, 0
	s.polling = false
	s.mu.Unlock()
	defer s.pollWritten()
	if closed {
		defer s.markFlushed()
		if out == nil {
			panic(http.ErrAbortHandler) // cut the connection, as a network failure would
		}
	}
	if len(out) == 0 { // released for the upgrade
		out = []EnginePacket{{Type: EngineNoop}}
	}
	writePayload(w, out)
}

// pollWritten: what a GET took is written (or its client is gone), so a
// sender waiting in waitRoom has room, and the next GET is not
// overlapping. Until then, a client that does not read holds the payload
// in its response, and its next GET cannot take another.
func (s *session) pollWritten() {
	s.mu.Lock()
	s.inflight = 0
	s.signal()
	s.mu.Unlock()
}

func writePayload(w http.ResponseWriter, ps []EnginePacket) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(EncodePayload(ps))
}

// post reads a long-polling POST: a payload of packets from the client.
func (s *session) post(w http.ResponseWriter, r *http.Request) {
	if s.expired() {
		writeEngineError(w, http.StatusBadRequest, errUnknownSID)
		return
	}
	s.mu.Lock()
	if s.closed || s.ws != nil {
		s.mu.Unlock()
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	if s.posting {
		s.mu.Unlock()
		s.close("overlapping posts", closeByServer)
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	s.posting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()
	max := s.srv.cfg.MaxPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		s.close("transport error", closeByServer)
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	if len(body) > max {
		s.close("payload too large", closeByServer)
		writeEngineError(w, http.StatusRequestEntityTooLarge, errBadRequest)
		return
	}
	ps, err := DecodePayload(body)
	if err != nil {
		s.close("parse error", closeByServer)
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	for _, p := range ps {
		if !s.receive(p) {
			break
		}
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}
