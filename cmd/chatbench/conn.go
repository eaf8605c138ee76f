package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// A bench connection is a lean client of its own rather than
// internal/wsclient: its read loop handles every frame inline (wsclient
// hands pushes to a bounded channel and drops them when it is full, which a
// load test would misreport as server loss), and it parses only what the
// checks need, so the load generator spends little of the shared CPU.

// handler receives what a connection reads. Both are called on the
// connection's read goroutine.
type handler interface {
	// onReply: code is "" for ok.
	onReply(c *benchConn, id int64, code string, data []byte)
	// onPush: seq is the frame's (native) or data's seq.
	onPush(c *benchConn, typ string, seq int64, data []byte)
}

// benchConn is one client connection (native /ws or Socket.IO).
type benchConn struct {
	idx  int // index of its user
	node int
	ws   *websocket.Conn
	sio  bool
	wmu  sync.Mutex
	h    handler
	done chan struct{}
	err  error
	// conv → last seq seen; touched only by the read goroutine.
	last map[string]int64
}

type dialOpts struct {
	url       string // ws://.../ws or ws://.../socket.io/?EIO=4&transport=websocket
	token     string
	localAddr string
	sio       bool
	bufSize   int
}

var dialer = websocket.Dialer{HandshakeTimeout: 20 * time.Second}

func dial(ctx context.Context, o dialOpts, idx, node int, h handler) (*benchConn, error) {
	d := dialer
	d.ReadBufferSize, d.WriteBufferSize = o.bufSize, o.bufSize
	if o.localAddr != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.localAddr)}, Timeout: 20 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	hdr := http.Header{}
	if !o.sio {
		hdr.Set("Authorization", "Bearer "+o.token)
	}
	ws, resp, err := d.DialContext(ctx, o.url, hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", o.url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", o.url, err)
	}
	c := &benchConn{idx: idx, node: node, ws: ws, sio: o.sio, h: h, done: make(chan struct{}), last: map[string]int64{}}
	if o.sio {
		if err := c.sioHandshake(o.token); err != nil {
			ws.Close()
			return nil, err
		}
	}
	go c.readLoop()
	return c, nil
}

// write sends one text frame; a stuck server (full TCP buffer) fails it
// after 10 s rather than hanging the load loop.
func (c *benchConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *benchConn) close() {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	c.wmu.Unlock()
	c.ws.Close()
}

func (c *benchConn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// request writes a command: data is its JSON.
func (c *benchConn) request(id int64, typ string, data []byte) error {
	var b []byte
	if c.sio {
		// 42<ack id>["type",data]
		b = append(b, "42"...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, `["`...)
		b = append(b, typ...)
		b = append(b, `",`...)
		b = append(b, data...)
		b = append(b, ']')
	} else {
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, `,"type":"`...)
		b = append(b, typ...)
		b = append(b, `","data":`...)
		b = append(b, data...)
		b = append(b, '}')
	}
	return c.write(b)
}

type inFrame struct {
	ID    int64           `json:"id"`
	Type  string          `json:"type"`
	Seq   int64           `json:"seq"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func (c *benchConn) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		if c.sio {
			c.sioFrame(b)
			continue
		}
		var f inFrame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		switch f.Type {
		case "ok":
			c.h.onReply(c, f.ID, "", f.Data)
		case "error":
			code := "unknown"
			if f.Error != nil {
				code = f.Error.Code
			}
			c.h.onReply(c, f.ID, code, nil)
		default:
			c.h.onPush(c, f.Type, f.Seq, f.Data)
		}
	}
}

// Socket.IO v5 over Engine.IO v4, websocket transport only: "0{open}",
// "40{auth}" / "40{sid}", "2"/"3" ping/pong, "42[event,data]", "43<id>[ack]".

func (c *benchConn) sioHandshake(token string) error {
	_ = c.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer c.ws.SetReadDeadline(time.Time{})
	_, b, err := c.ws.ReadMessage()
	if err != nil || len(b) == 0 || b[0] != '0' {
		return fmt.Errorf("engine.io open: %q %v", b, err)
	}
	auth, _ := json.Marshal(map[string]string{"token": token})
	if err := c.write(append([]byte("40"), auth...)); err != nil {
		return err
	}
	for range 10 {
		_, b, err = c.ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("socket.io connect: %w", err)
		}
		switch {
		case bytes.HasPrefix(b, []byte("40")):
			return nil
		case bytes.HasPrefix(b, []byte("44")):
			return fmt.Errorf("socket.io connect refused: %s", b[2:])
		case len(b) == 1 && b[0] == '2':
			_ = c.write([]byte("3"))
		}
	}
	return errors.New("socket.io connect: no CONNECT reply")
}

type sioAck struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

type seqOnly struct {
	Seq int64 `json:"seq"`
}

func (c *benchConn) sioFrame(b []byte) {
	p := parseSio(b)
	switch p.kind {
	case sioPing:
		_ = c.write([]byte("3"))
	case sioEvent:
		c.h.onPush(c, p.typ, p.seq, p.data)
	case sioAckPacket:
		c.h.onReply(c, p.id, p.code, p.data)
	}
}

const (
	sioOther = iota
	sioPing
	sioEvent
	sioAckPacket
)

type sioPacket struct {
	kind int
	typ  string
	seq  int64
	id   int64
	code string // ack: "" for ok
	data []byte
}

// parseSio reads one Engine.IO/Socket.IO packet from the server.
func parseSio(b []byte) sioPacket {
	switch {
	case len(b) == 1 && b[0] == '2':
		return sioPacket{kind: sioPing}
	case bytes.HasPrefix(b, []byte("42")):
		var args []json.RawMessage
		if json.Unmarshal(b[2:], &args) != nil || len(args) == 0 {
			return sioPacket{}
		}
		p := sioPacket{kind: sioEvent}
		_ = json.Unmarshal(args[0], &p.typ)
		if len(args) > 1 {
			p.data = args[1]
		}
		var s seqOnly
		_ = json.Unmarshal(p.data, &s)
		p.seq = s.Seq
		return p
	case bytes.HasPrefix(b, []byte("43")):
		i := bytes.IndexByte(b, '[')
		if i < 0 {
			return sioPacket{}
		}
		id, err := strconv.ParseInt(string(b[2:i]), 10, 64)
		if err != nil {
			return sioPacket{}
		}
		p := sioPacket{kind: sioAckPacket, id: id}
		var args []sioAck
		switch {
		case json.Unmarshal(b[i:], &args) != nil || len(args) == 0:
			p.code = "bad_ack"
		case args[0].OK:
			p.data = args[0].Data
		case args[0].Error != nil && args[0].Error.Code != "":
			p.code = args[0].Error.Code
		default:
			p.code = "unknown"
		}
		return p
	}
	return sioPacket{}
}
