// Package wswrite lets the goroutine that has a frame to send write it on a
// gorilla WebSocket at once, without waiting for the socket: a writer
// goroutine woken for every push cost a futex and a context switch per
// delivery (docs/benchmarks.md, "Session 12"). What the kernel does not
// take at once stays behind for the connection's writer, which may wait.
//
// gorilla/websocket has no write that gives up when the socket is full, so
// such frames are framed here and written on the descriptor; everything
// else (control frames, large and binary messages) stays with gorilla,
// which is free between messages.
package wswrite

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// MaxNow bounds the frames written at once: a frame this short is built in
// one pooled buffer, and its unwritten end is all a stalled client holds
// beyond its queue.
const MaxNow = 4000

// Conn writes frames on one WebSocket. Its owner serializes every write
// (WriteNow, Flush, gorilla's writes) with one lock, held around each call.
type Conn struct {
	ws        *websocket.Conn
	writeWait time.Duration
	// raw writes without waiting; nil when the connection has no descriptor
	// of its own (TLS): then nothing is written at once.
	raw syscall.RawConn
	// rest is the unwritten end of a frame WriteNow began; it goes before
	// anything else. At most one frame.
	rest []byte
	// frame, wrote and werr carry WriteNow's frame through writeFD, a
	// method value made once so that a write allocates nothing.
	frame   []byte
	wrote   int
	werr    error
	writeFn func(fd uintptr) bool
}

// New wraps ws. locked runs a function under the owner's lock: the answers
// gorilla writes from the reader (the pong to a client's ping, the close
// frame echoing a client's) go through it, after any unfinished frame.
func New(ws *websocket.Conn, writeWait time.Duration, locked func(func())) *Conn {
	c := &Conn{ws: ws, writeWait: writeWait}
	if sc, ok := ws.NetConn().(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.writeFn = c.writeFD
		}
	}
	ws.SetPingHandler(func(data string) error {
		var err error
		locked(func() { err = c.pong(data) })
		return err
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		locked(func() {
			if c.Flush() == nil {
				_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(c.writeWait))
			}
		})
		return nil
	})
	return c
}

// pong answers a ping after any unfinished frame. Errors end nothing, as
// with gorilla's own handler: the writer and the reader learn of a broken
// connection themselves.
func (c *Conn) pong(data string) error {
	if c.Flush() != nil {
		return nil
	}
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.writeWait))
	var ne net.Error
	if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
		return nil
	}
	return err
}

// CanWriteNow says whether a text frame of n bytes may be written at once:
// the connection has a descriptor, the frame is short and nothing is
// unfinished.
func (c *Conn) CanWriteNow(n int) bool {
	return c.raw != nil && n < MaxNow && len(c.rest) == 0
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// WriteNow writes head and data as one text frame without waiting for the
// socket, and reports whether some of it stays for Flush. Callers checked
// CanWriteNow.
func (c *Conn) WriteNow(head, data []byte) (unfinished bool, err error) {
	fb := framePool.Get().(*[]byte)
	c.frame = AppendText((*fb)[:0], head, data)
	c.wrote, c.werr = 0, nil
	err = c.raw.Write(c.writeFn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A deadline an earlier write set (gorilla sets one per message)
		// and that passed since: no write runs while the owner's lock is
		// held, so it bounds nothing now.
		_ = c.ws.NetConn().SetWriteDeadline(time.Time{})
		err = c.raw.Write(c.writeFn)
	}
	if err == nil {
		err = c.werr
	}
	if errors.Is(err, syscall.EAGAIN) {
		err = nil
	}
	if err == nil && c.wrote < len(c.frame) {
		c.rest = append([]byte(nil), c.frame[c.wrote:]...)
	}
	*fb = c.frame[:0]
	c.frame = nil
	framePool.Put(fb)
	return len(c.rest) > 0, err
}

// writeFD is one non-blocking write of c.frame; true: never wait for the
// descriptor to be writable.
func (c *Conn) writeFD(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), c.frame)
		if err == syscall.EINTR {
			continue
		}
		c.wrote, c.werr = max(n, 0), err
		return true
	}
}

// Flush writes what WriteNow left, waiting up to the write timeout. Every
// other write goes after it.
func (c *Conn) Flush() error {
	if len(c.rest) == 0 {
		return nil
	}
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(c.writeWait))
	_, err := nc.Write(c.rest)
	c.rest = nil
	return err
}

// AppendText appends an unmasked, final text frame (a server's) holding
// head and data.
func AppendText(b, head, data []byte) []byte {
	n := len(head) + len(data)
	switch {
	case n <= 125:
		b = append(b, 0x81, byte(n))
	case n <= 0xffff:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, head...)
	return append(b, data...)
}
