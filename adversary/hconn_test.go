//go:build adversary

package adversary

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// reply is a reply (native) or ack (Socket.IO) a hostile connection got.
type reply struct {
	id    int64
	hasID bool
	code  string // "ok" or the error code
	msg   string
	data  json.RawMessage
}

// hconn is a hostile connection: raw frames out, replies counted in. It
// speaks the native protocol or Socket.IO (after CONNECT) and reads every
// frame unless it was made not to read at all.
type hconn struct {
	name string
	sio  bool
	ws   *websocket.Conn
	wmu  sync.Mutex

	replies chan reply
	pushes  atomic.Int64
	done    chan struct{}
	closeEr error
	// types of requests in flight by id, so that acked sends are recorded
	mu    sync.Mutex
	types map[int64]string
	led   *ledger
	next  atomic.Int64
}

// dialNative opens /ws with a token; read=false never reads a byte.
func dialNative(ctx context.Context, node *chatd, name, token string, led *ledger, read bool) (*hconn, error) {
	h := http.Header{"Authorization": {"Bearer " + token}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, res, err := d.DialContext(ctx, node.ws(), h)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c := newHconn(name, false, ws, led)
	if read {
		go c.readLoop()
	}
	return c, nil
}

// dialSioHostile opens an authenticated Socket.IO session.
func dialSioHostile(ctx context.Context, node *chatd, name, token string, led *ledger, read bool) (*hconn, error) {
	ws, _, err := sioOpen(ctx, node.sio())
	if err != nil {
		return nil, err
	}
	ans, err := sioConnect(ws, map[string]string{"token": token})
	if err != nil || !bytes.HasPrefix([]byte(ans), []byte("40")) {
		ws.Close()
		return nil, fmt.Errorf("connect: %q %v", ans, err)
	}
	c := newHconn(name, true, ws, led)
	if read {
		go c.readLoop()
	}
	return c, nil
}

func newHconn(name string, sio bool, ws *websocket.Conn, led *ledger) *hconn {
	return &hconn{name: name, sio: sio, ws: ws, replies: make(chan reply, 100000), done: make(chan struct{}),
		types: map[int64]string{}, led: led}
}

func (c *hconn) write(typ int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(typ, b)
}

func (c *hconn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *hconn) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.closeEr = err
			return
		}
		if c.sio {
			c.sioFrame(b)
			continue
		}
		var f struct {
			ID    *int64          `json:"id"`
			Type  string          `json:"type"`
			Data  json.RawMessage `json:"data"`
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			c.replies <- reply{code: "unparseable reply: " + err.Error()}
			continue
		}
		switch f.Type {
		case "ok", "error":
			r := reply{code: "ok", data: f.Data}
			if f.ID != nil {
				r.id, r.hasID = *f.ID, true
			}
			if f.Type == "error" {
				r.code = "error without code"
				if f.Error != nil {
					r.code, r.msg = f.Error.Code, f.Error.Message
				}
			}
			c.got(r)
		default:
			c.pushes.Add(1)
		}
	}
}

func (c *hconn) sioFrame(b []byte) {
	switch {
	case string(b) == "2":
		_ = c.write(websocket.TextMessage, []byte("3"))
	case bytes.HasPrefix(b, []byte("43")):
		id, ack, _, ok := parseSioAck(b)
		if !ok {
			c.replies <- reply{code: fmt.Sprintf("unparseable ack %.100q", b)}
			return
		}
		r := reply{id: id, hasID: true, code: "ok", data: ack.Data}
		if !ack.OK {
			r.code = "error without code"
			if ack.Error != nil {
				r.code, r.msg = ack.Error.Code, ack.Error.Message
			}
		}
		c.got(r)
	case bytes.HasPrefix(b, []byte("42")):
		c.pushes.Add(1)
	}
}

// got delivers a reply and records an acked send in the ledger.
func (c *hconn) got(r reply) {
	if r.hasID && r.code == "ok" {
		c.mu.Lock()
		typ := c.types[r.id]
		c.mu.Unlock()
		if typ == "message.send" && c.led != nil {
			if m, err := ackedMessage(r.data); err == nil {
				m.By = c.name
				c.led.add(m)
			}
		}
	}
	c.replies <- r
}

// frame builds a command: native {"id","type","data"} or Socket.IO
// 42<id>[type,data]. typ and data are raw JSON (data nil: omitted).
func (c *hconn) frame(id int64, typ, data []byte) []byte {
	var b bytes.Buffer
	if c.sio {
		b.WriteString("42")
		b.WriteString(strconv.FormatInt(id, 10))
		b.WriteByte('[')
		b.Write(typ)
		if data != nil {
			b.WriteByte(',')
			b.Write(data)
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	b.WriteString(`{"id":`)
	b.WriteString(strconv.FormatInt(id, 10))
	b.WriteString(`,"type":`)
	b.Write(typ)
	if data != nil {
		b.WriteString(`,"data":`)
		b.Write(data)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// send writes a command with a fresh id and returns the id.
func (c *hconn) send(typ string, data []byte) (int64, error) {
	return c.sendRawType(quote(typ), typ, data)
}

func (c *hconn) sendRawType(rawType []byte, typ string, data []byte) (int64, error) {
	id := c.next.Add(1)
	c.mu.Lock()
	c.types[id] = typ
	c.mu.Unlock()
	return id, c.write(websocket.TextMessage, c.frame(id, rawType, data))
}

var errNoReply = errors.New("no reply")

// await waits for the next reply (bounded).
func (c *hconn) await(limit time.Duration) (reply, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case r := <-c.replies:
		return r, nil
	case <-c.done:
		select {
		case r := <-c.replies:
			return r, nil
		default:
		}
		return reply{}, fmt.Errorf("connection closed: %v", c.closeEr)
	case <-t.C:
		return reply{}, errNoReply
	}
}

// request sends one command and waits for its reply.
func (c *hconn) request(typ string, data []byte) (reply, error) {
	id, err := c.send(typ, data)
	if err != nil {
		return reply{}, err
	}
	r, err := c.await(20 * time.Second)
	if err == nil && (!r.hasID || r.id != id) {
		return r, fmt.Errorf("reply to id %d came with id %d (has id %v)", id, r.id, r.hasID)
	}
	return r, err
}

func (c *hconn) close() { _ = c.ws.Close() }

// waitClosed reads (without answering pings) until the server ends the
// connection, bounded by limit; it returns the error that ended it and the
// bytes read meanwhile, or an error when the connection was still open.
func waitClosed(ws *websocket.Conn, limit time.Duration) (int64, error, error) {
	ws.SetPingHandler(func(string) error { return nil }) // stay silent
	deadline := time.Now().Add(limit)
	var n int64
	for {
		_ = ws.SetReadDeadline(deadline)
		_, b, err := ws.ReadMessage()
		n += int64(len(b))
		if err == nil {
			continue
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return n, nil, fmt.Errorf("still open after %v (read %d bytes)", limit, n)
		}
		return n, err, nil
	}
}

func quote(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
