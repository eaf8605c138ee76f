// Package wsclient is a small client of Parley's native protocol, used by
// tests and chatbench.
package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// Push is a server push.
type Push struct {
	Type string          `json:"type"`
	Seq  int64           `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// Error is an error reply.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

func (e *Error) Error() string {
	if e.RequestID != "" {
		return e.Code + ": " + e.Message + " (request " + e.RequestID + ")"
	}
	return e.Code + ": " + e.Message
}

// Frame is any frame the server sends.
type Frame struct {
	ID    int64           `json:"id"`
	Type  string          `json:"type"`
	Seq   int64           `json:"seq"`
	Data  json.RawMessage `json:"data"`
	Error *Error          `json:"error"`
}

// Client is one connection.
type Client struct {
	ws      *websocket.Conn
	nextID  atomic.Int64
	mu      sync.Mutex
	writeMu sync.Mutex // gorilla allows one writer at a time
	waiting map[int64]chan Frame
	Pushes  chan Push
	done    chan struct{}
	// CloseErr is the error that ended the read loop (a *websocket.CloseError
	// when the server closed with a code).
	CloseErr error
}

// Options of Dial.
type Options struct {
	Header    http.Header
	LocalAddr string // source IP to dial from, e.g. 127.0.0.2
	PushBuf   int
}

// Dial connects to a /ws URL with a bearer token.
func Dial(ctx context.Context, url, token string, o Options) (*Client, *http.Response, error) {
	h := http.Header{}
	for k, v := range o.Header {
		h[k] = v
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := *websocket.DefaultDialer
	if o.LocalAddr != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.LocalAddr)}}
		d.NetDialContext = nd.DialContext
	}
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		return nil, resp, err
	}
	if o.PushBuf == 0 {
		o.PushBuf = 100000
	}
	c := &Client{ws: ws, waiting: map[int64]chan Frame{}, Pushes: make(chan Push, o.PushBuf), done: make(chan struct{})}
	go c.readLoop()
	return c, resp, nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.Pushes)
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
		var f Frame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		if f.Type == "ok" || f.Type == "error" {
			c.mu.Lock()
			ch := c.waiting[f.ID]
			delete(c.waiting, f.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			continue
		}
		select {
		case c.Pushes <- Push{Type: f.Type, Seq: f.Seq, Data: f.Data}:
		default: // test client overwhelmed; drop (tests size PushBuf)
		}
	}
}

// ErrClosed is returned for requests on a closed connection.
var ErrClosed = errors.New("connection closed")

// Request sends a command and waits for its reply; the reply's error is
// returned as *Error.
func (c *Client) Request(ctx context.Context, typ string, data any) (json.RawMessage, error) {
	id := c.nextID.Add(1)
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	b, err := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	if err != nil {
		return nil, err
	}
	if err := c.WriteRaw(b); err != nil {
		return nil, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if f.Error != nil {
			return nil, f.Error
		}
		return f.Data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", typ, ctx.Err())
	}
}

// WriteRaw writes one text Frame as is.
func (c *Client) WriteRaw(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// ReadRawReply waits for the reply Frame to a raw request with a known id.
func (c *Client) Expect(id int64) chan Frame {
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	return ch
}

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection.
func (c *Client) Close() error {
	return c.ws.Close()
}

// Conn exposes the underlying connection (tests of limits).
func (c *Client) Conn() *websocket.Conn { return c.ws }
