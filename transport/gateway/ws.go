package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/protocol"
	"github.com/parley-chat/parley/transport/wswrite"
)

// Close codes of the native protocol (docs/protocol.md).
const (
	CloseGoingAway    = 1001 // node shutting down: reconnect to any node and sync
	ClosePolicy       = 1008 // slow consumer: send queue overflowed
	CloseTooBig       = 1009 // frame over 64 KiB
	CloseTryAgain     = 1013 // connection limits reached
	CloseServiceReset = 1012 // node restarting: reconnect elsewhere and sync
	CloseTokenExpired = 4001 // the token expired: get a new one, reconnect and sync
)

// WSConfig holds the limits of native connections.
type WSConfig struct {
	MaxFrame       int64
	SendQueue      int
	RateLimit      float64
	RateBurst      int
	PingInterval   time.Duration
	PongWait       time.Duration
	WriteWait      time.Duration
	CommandTimeout time.Duration
	AllowedOrigins []string
	// Limits is the node's per-user rate limit, shared with its Socket.IO
	// server; nil: one of RateLimit and RateBurst for this server alone.
	Limits *UserLimits
}

func (c *WSConfig) defaults() {
	if c.MaxFrame == 0 {
		c.MaxFrame = 64 << 10
	}
	if c.SendQueue == 0 {
		c.SendQueue = 256
	}
	if c.RateLimit == 0 {
		c.RateLimit, c.RateBurst = 20, 40
	}
	if c.PingInterval == 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PongWait == 0 {
		c.PongWait = c.PingInterval * 2
	}
	if c.WriteWait == 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 15 * time.Second
	}
	if c.Limits == nil && c.RateLimit > 0 && c.RateBurst > 0 {
		c.Limits = NewUserLimits(c.RateLimit, c.RateBurst)
	}
}

// Validate reports a config the endpoint cannot work with (after defaults).
func (c WSConfig) Validate() error {
	switch {
	case c.MaxFrame < 512:
		return fmt.Errorf("ws: max frame %d below 512 bytes", c.MaxFrame)
	case c.SendQueue < 1:
		return fmt.Errorf("ws: send queue %d below 1", c.SendQueue)
	case c.RateLimit < 0 || c.RateBurst < 1:
		return fmt.Errorf("ws: rate %v/s burst %d: the rate must not be negative and the burst at least 1", c.RateLimit, c.RateBurst)
	case c.PingInterval < 10*time.Millisecond:
		return fmt.Errorf("ws: ping interval %s below 10ms", c.PingInterval)
	case c.PongWait <= c.PingInterval:
		return fmt.Errorf("ws: pong wait %s must exceed the ping interval %s", c.PongWait, c.PingInterval)
	case c.WriteWait <= 0 || c.CommandTimeout <= 0:
		return fmt.Errorf("ws: write wait %s and command timeout %s must be positive", c.WriteWait, c.CommandTimeout)
	}
	return nil
}

// WSServer upgrades /ws requests and runs native connections.
type WSServer struct {
	cfg      WSConfig
	hub      *Hub
	svc      *service.Service
	log      *slog.Logger
	pipe     *Pipeline
	upgrader websocket.Upgrader
	draining atomic.Bool
	wg       sync.WaitGroup
}

// NewWSServer builds the native endpoint.
func NewWSServer(cfg WSConfig, hub *Hub, svc *service.Service, log *slog.Logger) (*WSServer, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &WSServer{cfg: cfg, hub: hub, svc: svc, log: log, pipe: &Pipeline{Service: svc, Log: log, Timeout: cfg.CommandTimeout}}
	// Idle connections are the many: a write buffer comes from the pool only
	// while a frame is written, and the read buffer is small (frames are
	// mostly a few hundred bytes; a bigger one is read in several reads).
	// Together about 5 KiB less per idle connection (docs/benchmarks.md).
	// A client that offers the "parley" subprotocol (browsers do, beside
	// their "bearer.<jwt>") gets it selected; the bearer entry is never
	// echoed. Clients that offer none get none.
	s.upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: writeBufPool,
		CheckOrigin: s.checkOrigin, Subprotocols: []string{auth.Subprotocol}}
	return s, nil
}

var writeBufPool = &sync.Pool{}

// checkOrigin admits non-browser clients (no Origin), same-origin pages and
// the configured allow-list.
func (s *WSServer) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if slices.Contains(s.cfg.AllowedOrigins, origin) || slices.Contains(s.cfg.AllowedOrigins, "*") {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// Serve upgrades an authenticated request; user was verified by the caller.
func (s *WSServer) Serve(w http.ResponseWriter, r *http.Request, user string, expires time.Time) {
	if s.draining.Load() {
		http.Error(w, `{"error":{"code":"unavailable","message":"node is shutting down"}}`, http.StatusServiceUnavailable)
		return
	}
	if !s.checkOrigin(r) {
		metrics.ConnectionsRefused.WithLabelValues("origin").Inc()
		http.Error(w, `{"error":{"code":"forbidden","message":"origin not allowed"}}`, http.StatusForbidden)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	c := s.newConn(ws, user, r.RemoteAddr)
	c.expires = expires
	if err := s.hub.Register(c); err != nil {
		// The protocol's message, not err's text: a close reason is at
		// most 123 bytes (past it gorilla sends no close frame, and the
		// client sees 1006), and an unavailable error's text names hosts.
		body, _ := protocol.ToError(err)
		s.log.Warn("connection refused", "protocol", "ws", "user_id", user, "err", err)
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseTryAgain, closeReason(body.Message)), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.run()
	}()
}

// Draining reports whether Drain has begun: the node is shutting down.
func (s *WSServer) Draining() bool { return s.draining.Load() }

// Drain stops accepting and asks every client to reconnect elsewhere, then
// waits (bounded by ctx) for connections to finish their in-flight command.
func (s *WSServer) Drain(ctx context.Context) {
	s.draining.Store(true)
	s.hub.Each(func(cl Client) {
		if c, ok := cl.(*wsConn); ok {
			c.stopReading()
		}
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

type wsConn struct {
	s       *WSServer
	id      string // conn_id in logs; request ids are conn_id-<frame id>
	ws      *websocket.Conn
	user    string
	expires time.Time // the token's: the connection is closed then
	remote  string
	send    *sendQueue
	stream  *Stream
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	reason  atomic.Value
	ctrl    chan []byte
	// wmu serialises writers: a frame written at once by its sender
	// (writeNow), the on-demand drain, pings and the final flush.
	wmu      sync.Mutex
	now      *wswrite.Conn
	ping     *time.Timer
	finished chan struct{} // closed once the close frame was written
	// stopping is set on drain: the reader finishes the command in hand,
	// then the connection closes with CloseServiceReset.
	stopping atomic.Bool
}

// stopReading unblocks the reader; the command it is running, if any,
// completes and is answered first, because commands run on the reader.
func (c *wsConn) stopReading() {
	c.stopping.Store(true)
	_ = c.ws.SetReadDeadline(time.Now())
}

func (s *WSServer) newConn(ws *websocket.Conn, user, remote string) *wsConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{s: s, id: strconv.FormatUint(connSeq.Add(1), 10), ws: ws, user: user, remote: remote, send: newSendQueue(s.cfg.SendQueue, SendQueueBytes),
		ctx: ctx, cancel: cancel,
		ctrl: make(chan []byte, 1), finished: make(chan struct{})}
	c.now = wswrite.New(ws, s.cfg.WriteWait, c.locked)
	c.ping = time.AfterFunc(time.Hour, c.sendPing)
	c.ping.Stop() // armed by run
	c.stream = NewStream(c.enqueue, s.cfg.SendQueue)
	c.stream.Room = func(ctx context.Context) error { return c.send.waitRoom(ctx, c.ctx.Done()) }
	return c
}

func (c *wsConn) UserID() string { return c.user }

// Resync closes the connection asking the client to reconnect and sync.
func (c *wsConn) Resync(reason string) { c.closeWith(CloseServiceReset, reason) }

func (c *wsConn) Deliver(d domain.Delivery) { c.stream.Deliver(d) }

// enqueue never blocks: a client too slow to drain its queue is closed,
// which bounds the memory any one client can hold.
func (c *wsConn) enqueue(frame []byte) bool {
	if frame == nil {
		c.overflow()
		return false
	}
	ok, start := c.send.push(frame)
	if !ok {
		c.overflow()
		return false
	}
	if start && !c.writeNow() {
		go c.drain()
	}
	metrics.Pushes.Inc()
	return true
}

// writeNow writes the one queued frame at once, without waiting for the
// socket, when the connection is free (package wswrite); false: a writer
// must drain the queue (more frames came, or the socket took only part).
func (c *wsConn) writeNow() bool {
	if c.ctx.Err() != nil || !c.wmu.TryLock() {
		return false
	}
	defer c.wmu.Unlock()
	frame := c.send.takeOne(c.now.CanWriteNow)
	if frame == nil {
		return false
	}
	unfinished, err := c.now.WriteNow(nil, frame)
	if err != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "write failed")
		return true
	}
	if unfinished {
		c.send.unfinishedOne()
		return false
	}
	return c.send.idleIfEmpty()
}

func (c *wsConn) locked(f func()) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f()
}

func (c *wsConn) overflow() {
	metrics.SendQueueOverflows.Inc()
	c.closeWith(ClosePolicy, "send queue overflow: client reads too slowly")
}

func (c *wsConn) closeWith(code int, reason string) {
	c.once.Do(func() {
		c.reason.Store(reason)
		// 1006 is what a client sees when the connection drops without a
		// close frame; RFC 6455 forbids sending it in one.
		if code != websocket.CloseAbnormalClosure {
			c.ctrl <- websocket.FormatCloseMessage(code, closeReason(reason)) // once: the slot is free
		}
		c.cancel()
		go c.finish()
	})
}

// closeReason cuts a close frame's reason to the 123 bytes a control frame
// leaves it (RFC 6455, 5.5), at a character boundary: gorilla refuses a
// longer one and sends no close frame at all.
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// run is the connection's one long-lived goroutine: it reads. Writes need
// none while idle (idle connections are the many, docs/benchmarks.md): a
// drain goroutine lives while frames wait, and a timer sends the pings.
func (c *wsConn) run() {
	metrics.Connections.WithLabelValues("ws").Inc()
	start := time.Now()
	c.s.log.Info("connection open", "protocol", "ws", "conn_id", c.id, "user_id", c.user, "remote", c.remote)
	c.ping.Reset(c.s.cfg.PingInterval)
	if !c.expires.IsZero() {
		expiry := time.AfterFunc(time.Until(c.expires), func() {
			c.closeWith(CloseTokenExpired, "token expired: refresh it, reconnect and sync")
		})
		defer expiry.Stop()
	}
	c.readLoop()
	c.closeWith(websocket.CloseNormalClosure, "client closed")
	<-c.finished
	c.ping.Stop()
	c.s.hub.Unregister(c)
	c.ws.Close()
	metrics.Connections.WithLabelValues("ws").Dec()
	reason, _ := c.reason.Load().(string)
	c.s.log.Info("connection closed", "protocol", "ws", "conn_id", c.id, "user_id", c.user, "reason", reason,
		"duration_ms", time.Since(start).Milliseconds())
}

func (c *wsConn) readLoop() {
	c.stream.StartHold()
	c.ws.SetReadLimit(c.s.cfg.MaxFrame)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongWait))
	c.ws.SetPongHandler(func(string) error {
		c.extendRead()
		return nil
	})
	for c.ctx.Err() == nil {
		typ, b, err := c.ws.ReadMessage()
		if err != nil {
			switch {
			case c.stopping.Load():
				c.closeWith(CloseServiceReset, "node shutting down: reconnect and sync")
			case errors.Is(err, websocket.ErrReadLimit):
				c.reason.Store("frame over 64 KiB")
				c.closeWith(CloseTooBig, "frame over 64 KiB")
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				c.closeWith(websocket.CloseNormalClosure, "client closed")
			default:
				c.closeWith(websocket.CloseAbnormalClosure, "read: "+err.Error())
			}
			return
		}
		if c.ctx.Err() != nil {
			return // closing: a frame read now runs nothing (the token may have expired)
		}
		c.extendRead()
		if typ != websocket.TextMessage {
			c.reply(protocol.ErrorReply(0, errBinary))
			continue
		}
		c.handle(b)
		// The command ran on this reader, so no pong was read meanwhile, and
		// a sync may run for minutes: the pongs that came are read next, and
		// the time to answer a ping counts from now (else a client that
		// answered every ping is dropped as dead after a long sync).
		c.extendRead()
	}
}

// extendRead gives the client PongWait more to send, unless the
// connection is closing; checked again after, since a close that set the
// deadline to now in between must win.
func (c *wsConn) extendRead() {
	if c.closing() {
		return
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongWait))
	if c.closing() {
		_ = c.ws.SetReadDeadline(time.Now())
	}
}

// closing: the connection is being closed or the node drains; its read
// deadline, set to end the read, must not be pushed back by a pong (a
// client answering pings would keep a closed connection, its hub slot and,
// past its token's expiry, its reader alive).
func (c *wsConn) closing() bool { return c.stopping.Load() || c.ctx.Err() != nil }

var errBinary = fmt.Errorf("%w: frames must be text frames of JSON", domain.ErrBadRequest)

func (c *wsConn) handle(b []byte) {
	req, err := protocol.DecodeRequest(b)
	if err != nil {
		c.reply(protocol.ErrorReply(req.ID, err))
		return
	}
	res := c.s.pipe.Run(c.ctx, Call{Protocol: "ws", User: c.user, Stream: c.stream, Type: req.Type, Data: req.Data,
		Limit: c.s.cfg.Limits.For(c.user), Attrs: []any{"conn_id", c.id}})
	if res.Err != nil {
		c.reply(protocol.FailureReply(req.ID, *res.Err))
		return
	}
	c.reply(protocol.OKReply(req.ID, res.Data))
}

// SyncTimeout bounds a sync: it replays at the client's pace (flow
// control), so a long resume over a slow link takes longer than other
// commands; a client that stops reading is cut off by the write deadline.
const SyncTimeout = 5 * time.Minute

// CommandTimeout is the deadline of a command of type typ.
func CommandTimeout(typ string, def time.Duration) time.Duration {
	if typ == "sync" {
		return max(def, SyncTimeout)
	}
	return def
}

// connSeq numbers this node's connections; with node_id it names one.
var connSeq atomic.Uint64

func (c *wsConn) reply(r protocol.Reply) {
	b, err := marshal(r)
	if err != nil {
		return
	}
	// A reply waits, at most a fifth of WriteWait (2 s), for room in the
	// send queue: a client that pipelines hundreds of commands and reads the
	// replies keeps pace (the reader, which runs the commands, stops reading
	// meanwhile) instead of overflowing its queue; one that took nothing
	// meanwhile is closed as too slow (1008), well before the blocked
	// write's own deadline would cut it off without a close frame (1006),
	// even when building the replies that filled the queue took seconds.
	// (The timer is made only when the queue is full: most replies find room.)
	if !c.send.hasRoom() {
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteWait/5)
		err = c.send.waitRoom(ctx, c.ctx.Done())
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.overflow()
			}
			return
		}
	}
	c.enqueue(b)
}

// drain writes queued frames until the queue is empty, then ends; the next
// push starts another. After the close began the final flush writes them.
func (c *wsConn) drain() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.now.Flush() != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "write failed")
		return
	}
	var batch [][]byte
	for c.ctx.Err() == nil {
		batch = c.send.takeOrIdle(batch)
		if len(batch) == 0 {
			return
		}
		for i, frame := range batch {
			if !c.write(websocket.TextMessage, frame) {
				c.closeWith(websocket.CloseAbnormalClosure, "write failed")
				return
			}
			batch[i] = nil
		}
		if cap(batch) > 32 { // a burst is over: do not keep its buffer
			batch = nil
		}
	}
}

// sendPing runs on the ping timer and re-arms it.
func (c *wsConn) sendPing() {
	if c.ctx.Err() != nil {
		return
	}
	var err error
	c.locked(func() {
		if err = c.now.Flush(); err == nil {
			err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteWait))
		}
	})
	if err != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "write failed")
		return
	}
	c.ping.Reset(c.s.cfg.PingInterval)
}

// finish writes what is still queued and the close frame, once, after the
// connection was told to close.
func (c *wsConn) finish() {
	c.wmu.Lock()
	c.flushClose()
	c.wmu.Unlock()
	close(c.finished)
}

// flushClose writes what is queued (replies to in-flight commands), then the
// close frame, within the write timeout.
func (c *wsConn) flushClose() {
	// Whatever happens to the flush, unblock the reader: a connection whose
	// writes failed must not keep its reader and hub slot until the pings
	// time out.
	defer func() { _ = c.ws.SetReadDeadline(time.Now()) }()
	if c.now.Flush() != nil {
		return
	}
	deadline := time.Now().Add(c.s.cfg.WriteWait)
	for range 1000 { // replies may still be queued while we flush
		frames := c.send.take(nil)
		if len(frames) == 0 {
			break
		}
		for _, frame := range frames {
			if time.Now().After(deadline) || !c.write(websocket.TextMessage, frame) {
				return
			}
		}
	}
	select {
	case msg := <-c.ctrl:
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	default:
	}
}

func (c *wsConn) write(typ int, b []byte) bool {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteWait))
	return c.ws.WriteMessage(typ, b) == nil
}

// sendQueue is a connection's bounded queue of outgoing frames. Unlike a
// buffered channel of SendQueue slots it costs nothing while empty, and idle
// connections are the many (docs/benchmarks.md). It also tracks whether a
// writer is draining it, so exactly one runs while frames wait.
type sendQueue struct {
	mu       sync.Mutex
	frames   [][]byte
	bytes    int // of frames
	limit    int
	maxBytes int
	writing  bool
	taken    chan struct{} // closed when the writer takes frames (waitRoom)
	// For Stats: the batch the writer took and may still be writing, and
	// the most queued, and held (queued plus that batch), at once.
	outFrames, outBytes   int
	peakFrames, peakBytes int
	peakHeld, peakHeldB   int
	direct, unfinished    int
}

// QueueStats describe a connection's send queue, for tests of its bounds:
// what it holds now, the most it held at once (queued, and queued plus
// the batch being written: the frames memory the connection holds), and
// its bounds.
// Direct counts frames their sender wrote at once, Unfinished those of
// them the socket did not take whole (a writer finished them).
type QueueStats struct {
	Direct, Unfinished            int
	Frames, Bytes                 int
	PeakFrames, PeakBytes         int
	PeakHeldFrames, PeakHeldBytes int
	MaxFrames, MaxBytes           int
}

// stats reads the queue's figures.
func (q *sendQueue) stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueStats{Direct: q.direct, Unfinished: q.unfinished, Frames: len(q.frames), Bytes: q.bytes, PeakFrames: q.peakFrames, PeakBytes: q.peakBytes,
		PeakHeldFrames: q.peakHeld, PeakHeldBytes: q.peakHeldB, MaxFrames: q.limit, MaxBytes: q.maxBytes}
}

// SendQueueStats is the connection's send queue figures (tests: a long
// replay stays within the bounds).
func (c *wsConn) SendQueueStats() QueueStats { return c.send.stats() }

// waitRoom blocks until the queue is at most half full, ctx ends or closed
// is closed (the connection ended).
func (q *sendQueue) waitRoom(ctx context.Context, closed <-chan struct{}) error {
	for {
		q.mu.Lock()
		if q.roomLocked() {
			q.mu.Unlock()
			return nil
		}
		if q.taken == nil {
			q.taken = make(chan struct{})
		}
		ch := q.taken
		q.mu.Unlock()
		select {
		case <-ch:
		case <-closed:
			return errConnClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hasRoom reports whether the queue is at most half full (waitRoom's test).
func (q *sendQueue) hasRoom() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.roomLocked()
}

func (q *sendQueue) roomLocked() bool {
	return len(q.frames) < max(1, q.limit/2) && (q.maxBytes == 0 || q.bytes < q.maxBytes/2)
}

var errConnClosed = errors.New("connection closed")

// tookLocked wakes the senders waiting for room.
func (q *sendQueue) tookLocked() {
	if q.taken != nil {
		close(q.taken)
		q.taken = nil
	}
}

func newSendQueue(limit, maxBytes int) *sendQueue {
	return &sendQueue{limit: limit, maxBytes: maxBytes}
}

// SendQueueBytes bounds the bytes queued per connection: frames are small,
// but replies (history pages) are up to MaxPageBytes, and a client that
// asks and does not read must not hold more than this.
const SendQueueBytes = 8 << 20

// push queues a frame; ok is false when the queue is full, and start is
// true when no writer is draining the queue: the caller must start one.
func (q *sendQueue) push(frame []byte) (ok, start bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) >= q.limit || (q.maxBytes > 0 && q.bytes+len(frame) > q.maxBytes) {
		return false, false
	}
	q.frames = append(q.frames, frame)
	q.bytes += len(frame)
	q.peakFrames, q.peakBytes = max(q.peakFrames, len(q.frames)), max(q.peakBytes, q.bytes)
	q.peakHeld, q.peakHeldB = max(q.peakHeld, len(q.frames)+q.outFrames), max(q.peakHeldB, q.bytes+q.outBytes)
	start = !q.writing
	q.writing = true
	return true, start
}

// takeOne takes the queue's only frame when fits says it may be written at
// once; nil otherwise. The writer stays marked (push starts no other): the
// caller ends with idleIfEmpty or a drain.
func (q *sendQueue) takeOne(fits func(n int) bool) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) != 1 || !fits(len(q.frames[0])) {
		return nil
	}
	f := q.frames[0]
	q.frames[0] = nil
	q.frames, q.bytes = q.frames[:0], 0
	q.outFrames, q.outBytes = 1, len(f)
	q.direct++
	q.tookLocked()
	return f
}

// unfinishedOne counts a frame written at once that the socket did not
// take whole.
func (q *sendQueue) unfinishedOne() {
	q.mu.Lock()
	q.unfinished++
	q.mu.Unlock()
}

// idleIfEmpty records that the writer stops, if nothing is queued; false:
// frames came meanwhile and a writer must drain them.
func (q *sendQueue) idleIfEmpty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) > 0 {
		return false
	}
	q.writing = false
	q.outFrames, q.outBytes = 0, 0
	return true
}

// takeOrIdle is take for the writer: when nothing is queued it records that
// the writer stops, under the same lock as push, so no frame is stranded.
func (q *sendQueue) takeOrIdle(spare [][]byte) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 {
		q.writing = false
		q.outFrames, q.outBytes = 0, 0
		return spare[:0]
	}
	out := q.frames
	q.outFrames, q.outBytes = len(out), q.bytes
	q.frames, q.bytes = spare[:0], 0
	q.tookLocked()
	return out
}

// take returns the queued frames, oldest first, and leaves spare (emptied)
// as the queue's next buffer.
func (q *sendQueue) take(spare [][]byte) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.frames
	q.outFrames, q.outBytes = len(out), q.bytes
	q.frames, q.bytes = spare[:0], 0
	q.tookLocked()
	return out
}
