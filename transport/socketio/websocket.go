package socketio

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/transport/wswrite"
)

// wsConn is a WebSocket with serialized writes. A short text packet may be
// written at once by its sender (session.writeNow, package wswrite).
type wsConn struct {
	conn      *websocket.Conn
	writeWait time.Duration
	wmu       sync.Mutex
	now       *wswrite.Conn
}

func newWSConn(conn *websocket.Conn, writeWait time.Duration) *wsConn {
	c := &wsConn{conn: conn, writeWait: writeWait}
	c.now = wswrite.New(conn, writeWait, c.locked)
	return c
}

func (c *wsConn) locked(f func()) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f()
}

// canWriteNow says whether p may be written by its sender: a text packet
// wswrite takes (its type byte and data). Callers hold wmu.
func (c *wsConn) canWriteNow(p EnginePacket) bool {
	return !p.Binary && c.now.CanWriteNow(len(p.Data)+1)
}

// typeBytes holds each Engine.IO packet type's character.
var typeBytes = []byte("0123456")

// writeNow writes p without waiting; unfinished: the writer must Flush the
// rest. Callers hold wmu and checked canWriteNow.
func (c *wsConn) writeNow(p EnginePacket) (unfinished bool, err error) {
	return c.now.WriteNow(typeBytes[p.Type:p.Type+1], p.Data)
}

// flush writes what writeNow left.
func (c *wsConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.now.Flush()
}

// inlineWrite is below the upgrader's write buffer (4096) less a frame
// header: a packet this short fits the buffer whole.
const inlineWrite = 4000

// write sends one packet: binary messages as binary frames, the rest as text.
func (c *wsConn) write(p EnginePacket) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.now.Flush(); err != nil {
		return err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.writeWait))
	if p.Binary {
		return c.conn.WriteMessage(websocket.BinaryMessage, p.Data)
	}
	if len(p.Data) >= inlineWrite {
		return c.conn.WriteMessage(websocket.TextMessage, p.EncodeText()) // one frame
	}
	// The type byte and the data go through the connection's write buffer
	// (no copy of the packet per write), in one frame.
	w, err := c.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	_, _ = w.Write([]byte{'0' + byte(p.Type)})
	_, _ = w.Write(p.Data)
	return w.Close()
}

func (c *wsConn) closeNormally() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.now.Flush()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = c.conn.Close()
}

// serveWebSocket runs a session opened on WebSocket.
func (s *session) serveWebSocket(c *wsConn) {
	s.mu.Lock()
	s.ws = c
	s.mu.Unlock()
	go s.writeLoop(c)
	s.readLoop(c)
}

// readLoop reads packets until the connection or the session ends.
func (s *session) readLoop(c *wsConn) {
	c.conn.SetReadLimit(int64(s.srv.cfg.MaxPayload))
	// The heartbeat closes a silent session; the deadline only backs it up.
	idle := s.srv.cfg.PingInterval + s.srv.cfg.PingTimeout + s.srv.cfg.WriteWait
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(idle))
		typ, b, err := c.conn.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				s.close("payload too large", closeAbort)
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
				s.close("transport close", closeAbort)
			default:
				s.close("transport error", closeAbort)
			}
			return
		}
		var p EnginePacket
		if typ == websocket.BinaryMessage {
			p = DecodeEngineBinary(b)
		} else if p, err = DecodeEngineText(b); err != nil {
			s.close("parse error", closeByServer)
			return
		}
		if !s.receive(p) {
			return
		}
	}
}

// writeLoop writes queued packets until the session ends, then flushes
// (unless aborted) and closes the connection.
func (s *session) writeLoop(c *wsConn) {
	defer s.markFlushed()
	var spare []EnginePacket // the last written queue, emptied, for the next
	for {
		s.mu.Lock()
		s.writing = false
		for len(s.buf) == 0 && !s.closed && !s.stalled {
			s.mu.Unlock()
			<-s.kick // a kick left from before only costs one more check
			s.mu.Lock()
		}
		out, closed, mode := s.buf, s.closed, s.mode
		s.writing, s.stalled = true, false
		s.qstats.took(len(s.buf), s.bufBytes)
		s.buf, s.bufBytes, spare = spare, 0, nil
		s.broadcast() // room for a sender waiting in waitRoom
		s.mu.Unlock()
		if closed && mode == closeAbort {
			_ = c.conn.Close()
			return
		}
		if err := c.flush(); err != nil {
			s.close("transport error", closeAbort)
			_ = c.conn.Close()
			return
		}
		for _, p := range out {
			if err := c.write(p); err != nil {
				s.close("transport error", closeAbort)
				_ = c.conn.Close()
				return
			}
		}
		if closed { // send refuses packets once closed: out was the last of them
			c.closeNormally()
			return
		}
		if cap(out) <= spareQueue {
			clear(out) // the packets' memory goes
			spare = out[:0]
		}
	}
}

// spareQueue bounds the queue a writer keeps for reuse: a queue as long as a
// burst made it is let go, so an idle session holds little.
const spareQueue = 16

// probe runs a WebSocket that upgrades a long-polling session: "2probe" is
// answered with "3probe" (and the pending poll released with a noop), then
// "5" moves the session onto this WebSocket.
func (srv *Server) probe(w http.ResponseWriter, r *http.Request, s *session) {
	conn, err := srv.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := newWSConn(conn, srv.cfg.WriteWait)
	s.mu.Lock()
	if s.closed || s.ws != nil || s.probe != nil {
		s.mu.Unlock()
		_ = conn.Close() // already upgraded or upgrading
		return
	}
	s.probe = c
	s.mu.Unlock()
	if !s.runProbe(c) {
		s.mu.Lock()
		if s.probe == c {
			s.probe, s.probed = nil, false
		}
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	go s.writeLoop(c)
	s.readLoop(c)
}

func (s *session) runProbe(c *wsConn) bool {
	c.conn.SetReadLimit(int64(s.srv.cfg.MaxPayload))
	_ = c.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.UpgradeTimeout))
	for {
		typ, b, err := c.conn.ReadMessage()
		if err != nil || typ != websocket.TextMessage {
			return false
		}
		switch string(b) {
		case "2probe":
			if c.write(EnginePacket{Type: EnginePong, Data: []byte("probe")}) != nil {
				return false
			}
			s.mu.Lock()
			ok := s.probe == c && !s.closed
			if ok {
				s.probed = true
				s.signal() // release the pending poll so the client can pause polling
			}
			s.mu.Unlock()
			if !ok {
				return false
			}
		case "5":
			s.mu.Lock()
			ok := s.probe == c && s.probed && !s.closed
			if ok {
				s.ws, s.probe, s.probed = c, nil, false
				s.signal()
			}
			s.mu.Unlock()
			return ok
		default:
			return false
		}
	}
}
