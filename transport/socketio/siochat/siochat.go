// Package siochat maps Parley's protocol onto Socket.IO's namespace "/":
// the JWT comes in the CONNECT auth payload {"token": "<jwt>"}, a command is
// an emit whose ack gets {"ok": true, "data": ...} or {"ok": false, "error":
// {"code", "message"}}, and pushes arrive as emits of their type. The
// commands themselves run in service.Service, as on the native WebSocket.
package siochat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/protocol"
	"github.com/parley-chat/parley/transport/socketio"
)

// Config of the chat namespace; zero values mean the defaults given.
type Config struct {
	JWTSecret      string
	JWTPrevious    []string // still accepted during a secret rotation
	JWTPolicy      auth.Policy
	RateLimit      float64       // 20 commands/s per user on this node
	RateBurst      int           // 40
	CommandQueue   int           // 64 commands waiting per connection
	SendQueue      int           // 256 pushes held for a new connection until its first command
	CommandTimeout time.Duration // 15s
	// Limits is the node's per-user rate limit, shared with its native
	// WebSocket server; nil: one of RateLimit and RateBurst for this
	// namespace alone.
	Limits *gateway.UserLimits
}

func (c *Config) defaults() {
	if c.RateLimit == 0 {
		c.RateLimit, c.RateBurst = 20, 40
	}
	if c.RateBurst == 0 {
		c.RateBurst = int(c.RateLimit) * 2
	}
	if c.SendQueue == 0 {
		c.SendQueue = 256
	}
	if c.CommandQueue == 0 {
		c.CommandQueue = 64
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 15 * time.Second
	}
	if c.Limits == nil && c.RateLimit > 0 && c.RateBurst > 0 {
		c.Limits = gateway.NewUserLimits(c.RateLimit, c.RateBurst)
	}
}

// Validate reports a config the namespace cannot work with (after defaults).
func (c Config) Validate() error {
	switch {
	case c.RateLimit < 0 || c.RateBurst < 1:
		return fmt.Errorf("siochat: rate %v/s burst %d: the rate must not be negative and the burst at least 1", c.RateLimit, c.RateBurst)
	case c.SendQueue < 1 || c.CommandQueue < 1:
		return fmt.Errorf("siochat: send queue %d and command queue %d must be at least 1", c.SendQueue, c.CommandQueue)
	case c.CommandTimeout <= 0:
		return fmt.Errorf("siochat: command timeout %s must be positive", c.CommandTimeout)
	}
	return nil
}

// Chat admits sockets to "/" and runs their commands.
type Chat struct {
	cfg      Config
	hub      *gateway.Hub
	svc      *service.Service
	verifier auth.Verifier
	pipe     *gateway.Pipeline
	log      *slog.Logger
	wg       sync.WaitGroup
	draining atomic.Bool
	inflight atomic.Int64 // commands queued or running, on every connection
	lastPush atomic.Pointer[encodedPush]
}

// New builds the namespace handler.
func New(cfg Config, hub *gateway.Hub, svc *service.Service, log *slog.Logger) (*Chat, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Chat{cfg: cfg, hub: hub, svc: svc, verifier: auth.NewVerifier(cfg.JWTSecret, cfg.JWTPrevious...).With(cfg.JWTPolicy), log: log,
		pipe: &gateway.Pipeline{Service: svc, Log: log, Timeout: cfg.CommandTimeout}}, nil
}

// Drain refuses new commands (unavailable: retry on another node) and
// waits, bounded by ctx, until the commands already accepted have been
// answered, so their acks go out before the sessions close.
func (c *Chat) Drain(ctx context.Context) {
	c.draining.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Wait blocks until every connection's command worker has ended, or ctx.
func (c *Chat) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Connect is the socketio.ConnectFunc of "/".
func (c *Chat) Connect(s *socketio.Socket, authData json.RawMessage) error {
	var a struct {
		Token string `json:"token"`
	}
	if authData != nil {
		_ = json.Unmarshal(authData, &a)
	}
	if a.Token == "" {
		return refusal(fmt.Errorf("%w: auth.token is required: io(url, {auth: {token}})", domain.ErrUnauthorized))
	}
	id, err := c.verifier.Identify(a.Token)
	if err != nil {
		return refusal(err)
	}
	if err := id.OpensAt(time.Now()); err != nil {
		return refusal(err)
	}
	user := id.User
	conn := c.newConn(s, user)
	// The socket ends with its token: the client refreshes and reconnects
	// (it sees a server-side disconnect, "io server disconnect").
	expiry := time.AfterFunc(time.Until(id.Expires), func() {
		c.log.Info("token expired: disconnecting", "protocol", "socketio", "user_id", user)
		s.Disconnect()
	})
	conn.expiry = expiry // stopped when the socket ends (ended)
	if err := c.hub.Register(conn); err != nil {
		expiry.Stop()
		conn.cancel()
		return refusal(err)
	}
	s.OnEvent(conn.onEvent)
	s.OnDisconnect(conn.ended)
	conn.stream.StartHold() // registered: the client's sync may come now
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		conn.work()
	}()
	metrics.Connections.WithLabelValues("socketio").Inc()
	c.log.Info("connection open", "protocol", "socketio", "user_id", user,
		"sid", socketio.SIDForLog(s.SessionID()), "remote", s.Handshake().RemoteAddr)
	return nil
}

// refusal turns an error into CONNECT_ERROR {"message", "data": {"code"}}.
func refusal(err error) error {
	body, _ := protocol.ToError(err)
	return &socketio.ConnectError{Message: body.Message, Data: map[string]string{"code": body.Code}}
}

// conn is one socket on "/", registered in the hub like a native connection.
type conn struct {
	chat   *Chat
	sock   *socketio.Socket
	user   string
	stream *gateway.Stream
	cmds   chan *socketio.Event
	// pending counts the commands queued or running. The socket's reader is
	// their only source, so at 0 none is ahead of a new one, which then runs
	// on the reader itself: handing each command to the worker cost a
	// goroutine wake-up per command (docs/benchmarks.md, "Session 12").
	pending atomic.Int32
	ctx     context.Context
	cancel  context.CancelFunc
	start   time.Time
	expiry  *time.Timer // disconnects the socket when its token expires
}

func (c *Chat) newConn(s *socketio.Socket, user string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	cn := &conn{chat: c, sock: s, user: user,
		cmds: make(chan *socketio.Event, c.cfg.CommandQueue), ctx: ctx, cancel: cancel, start: time.Now()}
	cn.stream = gateway.NewStream(cn.push, c.cfg.SendQueue)
	cn.stream.Room = s.WaitRoom
	return cn
}

var _ gateway.Resyncer = (*conn)(nil)

func (c *conn) UserID() string { return c.user }

// Deliver hands a live push to the connection's ordering stream.
func (c *conn) Deliver(d domain.Delivery) { c.stream.Deliver(d) }

// Resync closes the session cleanly (what is queued is flushed first) so
// that the client reconnects and syncs: the hub calls it when this node
// missed deliveries.
func (c *conn) Resync(reason string) {
	c.chat.log.Info("socket.io resync", "user_id", c.user, "reason", reason)
	c.sock.Close()
}

// CloseTransport cuts the connection as a network failure would (the client
// reconnects and syncs); tests use it to play a dropped connection.
func (c *conn) CloseTransport() { c.sock.CloseTransport() }

// SendQueueStats is the figures of the session's send queue (tests: a long
// replay stays within its bounds).
func (c *conn) SendQueueStats() gateway.QueueStats {
	return gateway.QueueStats(c.sock.QueueStats())
}

// push emits a native push frame (encodePush). It never blocks: a full
// queue closes the session.
func (c *conn) push(frame []byte) bool {
	if frame == nil { // the stream's hold overflowed
		metrics.SendQueueOverflows.Inc()
		c.sock.CloseTransport()
		return false
	}
	text, err := c.chat.encodePush(frame, c.sock.Namespace())
	if err != nil {
		c.chat.log.Error("bad push frame", "err", err)
		return true
	}
	switch err := c.sock.EmitEncoded(text); {
	case err == nil:
		metrics.Pushes.Inc()
		return true
	case errors.Is(err, socketio.ErrOverflow):
		metrics.SendQueueOverflows.Inc()
		return false
	default:
		return false
	}
}

var (
	errBusy        = fmt.Errorf("%w: too many commands waiting on this connection", domain.ErrRateLimited)
	errBinary      = fmt.Errorf("%w: binary attachments are not accepted", domain.ErrBadRequest)
	errInvalidUTF8 = fmt.Errorf("%w: data is not valid UTF-8", domain.ErrBadRequest)
	errDraining    = fmt.Errorf("%w: node shutting down: reconnect and retry", domain.ErrUnavailable)
)

// onEvent queues a command without blocking the session's read path.
func (c *conn) onEvent(ev *socketio.Event) {
	if c.chat.draining.Load() {
		c.ack(ev, c.chat.pipe.Fail(c.call(ev), errDraining))
		return
	}
	c.chat.inflight.Add(1)
	// A command runs on the read path when nothing is ahead of it (no
	// hand-off), except sync: its replay goes at the client's pace, and a
	// polling client polls no more while its POST is unanswered (nor, once
	// it has begun upgrading, at all), and its pongs wait behind it; on the
	// worker, the POST is answered at once and the heartbeat goes on.
	if ev.Name != "sync" && c.pending.CompareAndSwap(0, 1) {
		c.run(ev)
		return
	}
	c.pending.Add(1)
	select {
	case c.cmds <- ev:
	default:
		c.pending.Add(-1)
		c.chat.inflight.Add(-1)
		c.ack(ev, c.chat.pipe.Fail(c.call(ev), errBusy))
	}
}

// call is the pipeline's view of an event (its first argument is the
// command's data).
func (c *conn) call(ev *socketio.Event) gateway.Call {
	data := json.RawMessage("{}")
	if len(ev.Args) > 0 && string(ev.Args[0]) != "null" {
		data = ev.Args[0]
	}
	return gateway.Call{Protocol: "socketio", User: c.user, Stream: c.stream, Type: ev.Name, Data: data,
		Limit: c.chat.cfg.Limits.For(c.user)}
}

// work runs the connection's queued commands one at a time, in arrival
// order (onEvent runs a command itself when none is queued or running).
func (c *conn) work() {
	defer func() { // what is still queued will not run
		for {
			select {
			case <-c.cmds:
				c.pending.Add(-1)
				c.chat.inflight.Add(-1)
			default:
				return
			}
		}
	}()
	for {
		select {
		case <-c.ctx.Done():
			return
		case ev := <-c.cmds:
			c.run(ev)
		}
	}
}

func (c *conn) run(ev *socketio.Event) {
	defer c.pending.Add(-1)
	defer c.chat.inflight.Add(-1)
	call := c.call(ev)
	switch {
	case len(ev.Attachments) > 0:
		c.ack(ev, c.chat.pipe.Fail(call, errBinary))
	case !utf8.Valid(call.Data):
		// As /ws refuses such a frame: encoding/json would silently store
		// U+FFFD in place of the client's bytes.
		c.ack(ev, c.chat.pipe.Fail(call, errInvalidUTF8))
	default:
		c.ack(ev, c.chat.pipe.Run(c.ctx, call))
	}
}

// ack answers ev with res: {"ok": true, "data"} or {"ok": false, "error"}.
func (c *conn) ack(ev *socketio.Event, res gateway.Result) {
	var b []byte
	var err error
	if res.Err == nil {
		b, err = json.Marshal(struct {
			OK   bool `json:"ok"`
			Data any  `json:"data"`
		}{true, res.Data})
	}
	if res.Err != nil || err != nil {
		if err != nil {
			res = c.chat.pipe.Fail(c.call(ev), fmt.Errorf("encode reply: %w", err))
		}
		b, _ = json.Marshal(struct {
			OK    bool               `json:"ok"`
			Error protocol.ErrorBody `json:"error"`
		}{false, *res.Err})
	}
	_ = ev.Ack(b)
}

// ended runs once when the socket goes, for any reason.
func (c *conn) ended(reason string) {
	c.expiry.Stop()
	c.cancel()
	c.chat.hub.Unregister(c)
	metrics.Connections.WithLabelValues("socketio").Dec()
	c.chat.log.Info("connection closed", "protocol", "socketio", "user_id", c.user, "reason", reason,
		"duration_ms", time.Since(c.start).Milliseconds())
}

// encodedPush is a push frame's Socket.IO text on a namespace.
type encodedPush struct {
	frame []byte // held, so that its memory is not reused while it keys this
	ns    string
	text  []byte
}

// encodePush turns a native push frame {"type","seq","data"} into the
// event (type, data[, {"seq"}]); data is passed through unchanged. A
// delivery reaches every local recipient with the same frame, one after
// the other, so the last one encoded is kept and reused: one encoding per
// delivery instead of one per connection.
func (c *Chat) encodePush(frame []byte, ns string) ([]byte, error) {
	if last := c.lastPush.Load(); last != nil && last.ns == ns && len(last.frame) == len(frame) &&
		len(frame) > 0 && &last.frame[0] == &frame[0] {
		return last.text, nil
	}
	f, err := gateway.SplitPush(frame)
	if err != nil {
		return nil, err
	}
	args := []json.RawMessage{f.Data}
	if f.Seq > 0 {
		args = append(args, json.RawMessage(`{"seq":`+strconv.FormatInt(f.Seq, 10)+`}`))
	}
	text := socketio.EncodeEvent(ns, f.Type, args)
	c.lastPush.Store(&encodedPush{frame: frame, ns: ns, text: text})
	return text, nil
}
