//go:build adversary

package adversary

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/wsclient"
)

// A small Socket.IO v5 client over Engine.IO v4's WebSocket transport, as
// the official client speaks it with transports: ["websocket"]: "0{open}",
// "40{auth}" → "40{sid}" or "44{error}", "2" → "3", "42<id>[type,data]" →
// "43<id>[{ok,data|error}]", pushes "42[type,data,{seq}]".

var sioDialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}

// sioOpen dials a node's Socket.IO WebSocket and reads the open packet.
func sioOpen(ctx context.Context, url string) (*websocket.Conn, []byte, error) {
	ws, res, err := sioDialer.DialContext(ctx, url, nil)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	_ = ws.SetReadDeadline(time.Time{})
	if err != nil || len(b) == 0 || b[0] != '0' {
		ws.Close()
		return nil, nil, fmt.Errorf("engine.io open: %q %v", b, err)
	}
	return ws, b, nil
}

// sioConnect sends CONNECT with auth (nil: none) and returns the server's
// answer: "40{...}" or "44{...}" (pings met meanwhile are answered).
func sioConnect(ws *websocket.Conn, auth any) (string, error) {
	pkt := []byte("40")
	if auth != nil {
		b, _ := json.Marshal(auth)
		pkt = append(pkt, b...)
	}
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, pkt); err != nil {
		return "", err
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer ws.SetReadDeadline(time.Time{})
	for range 20 {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return "", err
		}
		switch {
		case string(b) == "2":
			_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
		case bytes.HasPrefix(b, []byte("40")) || bytes.HasPrefix(b, []byte("44")):
			return string(b), nil
		}
	}
	return "", errors.New("no CONNECT answer")
}

// sioAck is the argument of a chat ack.
type sioAck struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *wsclient.Error `json:"error"`
}

// parseSioAck reads "43<id>[arg]"; ok is false when b is not an ack.
func parseSioAck(b []byte) (id int64, ack sioAck, raw json.RawMessage, ok bool) {
	if !bytes.HasPrefix(b, []byte("43")) {
		return 0, ack, nil, false
	}
	i := bytes.IndexByte(b, '[')
	if i < 0 {
		return 0, ack, nil, false
	}
	id, err := strconv.ParseInt(string(b[2:i]), 10, 64)
	if err != nil {
		return 0, ack, nil, false
	}
	var args []json.RawMessage
	if json.Unmarshal(b[i:], &args) != nil || len(args) == 0 {
		return id, ack, nil, true
	}
	_ = json.Unmarshal(args[0], &ack)
	return id, ack, args[0], true
}

// parseSioEvent reads "42[type,data,{seq}]".
func parseSioEvent(b []byte) (wsclient.Push, bool) {
	if !bytes.HasPrefix(b, []byte("42[")) {
		return wsclient.Push{}, false
	}
	var args []json.RawMessage
	if json.Unmarshal(b[2:], &args) != nil || len(args) == 0 {
		return wsclient.Push{}, false
	}
	var p wsclient.Push
	if json.Unmarshal(args[0], &p.Type) != nil {
		return wsclient.Push{}, false
	}
	if len(args) > 1 {
		p.Data = args[1]
	}
	if len(args) > 2 {
		var meta struct {
			Seq int64 `json:"seq"`
		}
		_ = json.Unmarshal(args[2], &meta)
		p.Seq = meta.Seq
	}
	return p, true
}

// sioClient is a connected, authenticated Socket.IO client.
type sioClient struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	nextID  atomic.Int64
	mu      sync.Mutex
	waiting map[int64]chan sioAck
	pushes  chan wsclient.Push
	done    chan struct{}
	// CloseErr ended the read loop.
	CloseErr error
}

func dialSio(ctx context.Context, url, token string) (*sioClient, error) {
	ws, _, err := sioOpen(ctx, url)
	if err != nil {
		return nil, err
	}
	ans, err := sioConnect(ws, map[string]string{"token": token})
	if err != nil || !bytes.HasPrefix([]byte(ans), []byte("40")) {
		ws.Close()
		return nil, fmt.Errorf("socket.io connect: %q %v", ans, err)
	}
	c := &sioClient{ws: ws, waiting: map[int64]chan sioAck{}, pushes: make(chan wsclient.Push, 100000), done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *sioClient) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *sioClient) readLoop() {
	defer close(c.done)
	defer close(c.pushes)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.CloseErr = err
			c.mu.Lock()
			for id, ch := range c.waiting {
				close(ch)
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		switch {
		case string(b) == "2":
			_ = c.write([]byte("3"))
		case bytes.HasPrefix(b, []byte("43")):
			id, ack, _, ok := parseSioAck(b)
			if !ok {
				continue
			}
			c.mu.Lock()
			ch := c.waiting[id]
			delete(c.waiting, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- ack
			}
		case bytes.HasPrefix(b, []byte("42")):
			if p, ok := parseSioEvent(b); ok {
				select {
				case c.pushes <- p:
				default: // never full in this suite: every push is consumed
				}
			}
		case string(b) == "41" || string(b) == "1":
			c.ws.Close()
		}
	}
}

// Request emits typ with data and an ack id and waits for the ack.
func (c *sioClient) Request(ctx context.Context, typ string, data any) (json.RawMessage, error) {
	id := c.nextID.Add(1)
	ch := make(chan sioAck, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	args, err := json.Marshal([]any{typ, data})
	if err != nil {
		return nil, err
	}
	if err := c.write(append([]byte("42"+strconv.FormatInt(id, 10)), args...)); err != nil {
		return nil, err
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return nil, wsclient.ErrClosed
		}
		if !a.OK {
			if a.Error == nil {
				a.Error = &wsclient.Error{Code: "missing_error"}
			}
			return nil, a.Error
		}
		return a.Data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", typ, ctx.Err())
	}
}

func (c *sioClient) PushCh() <-chan wsclient.Push { return c.pushes }
func (c *sioClient) Done() <-chan struct{}        { return c.done }
func (c *sioClient) Close() error                 { return c.ws.Close() }

// nativeConn adapts wsclient.Client to chatConn.
type nativeConn struct{ *wsclient.Client }

func (c nativeConn) PushCh() <-chan wsclient.Push { return c.Pushes }

// chatConn is what a well-behaved client needs of a connection.
type chatConn interface {
	Request(ctx context.Context, typ string, data any) (json.RawMessage, error)
	PushCh() <-chan wsclient.Push
	Done() <-chan struct{}
	Close() error
}
