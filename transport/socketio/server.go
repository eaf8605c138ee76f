package socketio

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ConnectFunc admits a socket to a namespace. auth is the CONNECT payload
// (nil when the client sent none). It registers the socket's handlers with
// OnEvent and OnDisconnect; an error refuses the socket with CONNECT_ERROR
// (see ConnectError for adding data).
type ConnectFunc func(s *Socket, auth json.RawMessage) error

// ConnectError refuses a connection with a message and optional data: the
// client's connect_error gets err.message and err.data.
type ConnectError struct {
	Message string
	Data    any
}

func (e *ConnectError) Error() string { return e.Message }

// Config of a Server. The zero value of each field means the default given.
type Config struct {
	PingInterval   time.Duration // 25s: the server pings this often
	PingTimeout    time.Duration // 20s: a pong must come within this
	MaxPayload     int           // 1000000 bytes: largest WebSocket message or polling request body
	ConnectTimeout time.Duration // 45s: a session that joins no namespace by then is closed
	UpgradeTimeout time.Duration // 10s: a WebSocket probe must complete the upgrade by then
	WriteWait      time.Duration // 10s: a WebSocket write must finish by then
	// SendQueue bounds the packets buffered per session (1024). A session
	// over it is closed: its client reads too slowly. Long-polling drains the
	// buffer once per request, so it must hold what arrives between two polls.
	SendQueue int
	// SendQueueBytes bounds the bytes buffered per session (8 MiB), so that
	// large replies (history pages) to a client that does not read cannot
	// take the node's memory; over it the session is closed.
	SendQueueBytes int
	// MaxSessions bounds the open sessions of this server (0: no bound);
	// past it a handshake gets 503. Sessions count from the handshake, before
	// any namespace (and its authentication) was joined.
	MaxSessions int
	// MaxPendingSessions bounds the sessions that have not joined a
	// namespace yet (not authenticated: anyone can open one); past it a
	// handshake gets 503. They live at most ConnectTimeout. 0: no bound.
	MaxPendingSessions int
	// AllowedOrigins admits browser Origins besides the same origin ("*"
	// admits any). Requests without Origin (non-browser clients) are admitted.
	AllowedOrigins []string
	// Namespaces and their handlers; a CONNECT to any other gets
	// CONNECT_ERROR "Invalid namespace".
	Namespaces map[string]ConnectFunc
	// Router locates the node that owns a session id this node does not
	// hold; nil on a single node.
	Router Router
	Log    *slog.Logger
}

func (c *Config) defaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 20 * time.Second
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 1_000_000
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 45 * time.Second
	}
	if c.UpgradeTimeout <= 0 {
		c.UpgradeTimeout = 10 * time.Second
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 8 << 20
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 1024
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Server is an Engine.IO + Socket.IO endpoint; mount it at /socket.io/.
type Server struct {
	cfg      Config
	upgrader websocket.Upgrader
	proxy    *forwarder
	draining atomic.Bool
	pending  atomic.Int64 // sessions that joined no namespace yet

	mu       sync.Mutex
	sessions map[string]*session
	// waiting lists the pending sessions, oldest first: a handshake past
	// MaxPendingSessions closes the oldest.
	waiting list.List
}

// NewServer builds a server.
func NewServer(cfg Config) *Server {
	cfg.defaults()
	s := &Server{cfg: cfg, sessions: map[string]*session{}}
	s.upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096, CheckOrigin: s.originAllowed}
	if cfg.Router != nil {
		s.proxy = newForwarder(cfg.Router, cfg.Log)
	}
	return s
}

// Engine.IO error codes, answered as {"code","message"} with HTTP 400.
const (
	errTransportUnknown = 0
	errUnknownSID       = 1
	errBadHandshake     = 2
	errBadRequest       = 3
	errForbidden        = 4
	errUnsupported      = 5
)

var errMessages = map[int]string{
	errTransportUnknown: "Transport unknown",
	errUnknownSID:       "Session ID unknown",
	errBadHandshake:     "Bad handshake method",
	errBadRequest:       "Bad request",
	errForbidden:        "Forbidden",
	errUnsupported:      "Unsupported protocol version",
}

func writeEngineError(w http.ResponseWriter, status, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": errMessages[code]})
}

// ServeHTTP routes one Engine.IO request: a handshake, a poll, a post, a
// WebSocket, or a request for a session another node holds.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		writeEngineError(w, http.StatusForbidden, errForbidden)
		return
	}
	s.cors(w, r)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		writeEngineError(w, http.StatusBadRequest, errUnsupported)
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		writeEngineError(w, http.StatusBadRequest, errTransportUnknown)
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		s.handshake(w, r, transport)
		return
	}
	sess := s.session(sid)
	if sess == nil {
		if s.forward(w, r, sid) {
			return
		}
		writeEngineError(w, http.StatusBadRequest, errUnknownSID)
		return
	}
	switch {
	case transport == "websocket" && websocket.IsWebSocketUpgrade(r):
		s.probe(w, r, sess)
	case transport == "websocket":
		writeEngineError(w, http.StatusBadRequest, errBadRequest)
	case r.Method == http.MethodGet:
		sess.poll(w, r)
	case r.Method == http.MethodPost:
		sess.post(w, r)
	default:
		writeEngineError(w, http.StatusBadRequest, errBadHandshake)
	}
}

func (s *Server) handshake(w http.ResponseWriter, r *http.Request, transport string) {
	if s.draining.Load() {
		writeUnavailable(w, "node is shutting down: connect to another")
		return
	}
	if s.cfg.MaxSessions > 0 && s.Sessions() >= s.cfg.MaxSessions {
		writeUnavailable(w, "node is full: connect to another")
		return
	}
	if s.cfg.MaxPendingSessions > 0 && s.pending.Load() >= int64(s.cfg.MaxPendingSessions) {
		s.evictOldestPending()
	}
	if transport == "websocket" {
		if !websocket.IsWebSocketUpgrade(r) {
			writeEngineError(w, http.StatusBadRequest, errBadRequest)
			return
		}
		conn, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered
		}
		sess := s.newSession(r, true)
		sess.serveWebSocket(newWSConn(conn, s.cfg.WriteWait))
		return
	}
	if r.Method != http.MethodGet {
		writeEngineError(w, http.StatusBadRequest, errBadHandshake)
		return
	}
	sess := s.newSession(r, false)
	sess.poll(w, r)
}

// evictOldestPending closes the session that has waited longest for a
// CONNECT. Refusing the new handshake instead let anyone, with no token,
// keep every new Socket.IO client of a node out by opening sessions a
// little faster than the connect timeout closes them; a real client sends
// CONNECT one round trip after its handshake, so it is rarely the oldest.
func (s *Server) evictOldestPending() {
	s.mu.Lock()
	e := s.waiting.Front()
	var oldest *session
	if e != nil {
		oldest = s.waiting.Remove(e).(*session)
		oldest.waitingAt = nil
	}
	s.mu.Unlock()
	if oldest != nil {
		oldest.close("connect timeout (newer sessions waiting)", closeByServer)
	}
}

// wait adds sess to the pending sessions; unwait takes it out.
func (s *Server) wait(sess *session) {
	s.mu.Lock()
	if sess.waitingAt == nil {
		sess.waitingAt = s.waiting.PushBack(sess)
	}
	s.mu.Unlock()
}

func (s *Server) unwait(sess *session) {
	s.mu.Lock()
	if sess.waitingAt != nil {
		s.waiting.Remove(sess.waitingAt)
		sess.waitingAt = nil
	}
	s.mu.Unlock()
}

func writeUnavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": errBadRequest, "message": msg})
}

// originAllowed admits requests without Origin, same-origin requests and
// the allow-list.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(s.cfg.AllowedOrigins, "*") || slices.Contains(s.cfg.AllowedOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// cors lets browser pages of admitted origins read polling responses.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
	}
}

func (s *Server) session(sid string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sid]
}

func (s *Server) remove(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sid)
}

// newID is 120 random bits, URL-safe.
func newID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionID embeds this node's key so that any node can route to it.
func (s *Server) sessionID() string {
	if s.cfg.Router != nil {
		return s.cfg.Router.Self() + "." + newID()
	}
	return newID()
}

// SIDForLog is what logs say of a session id: a sid is a bearer
// credential (whoever has it can poll the session's pushes, on any node),
// so logs carry a short hash that still correlates lines of one session.
func SIDForLog(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return "sid#" + hex.EncodeToString(sum[:6])
}

// PendingSessions is the number of open sessions that joined no namespace.
func (s *Server) PendingSessions() int { return int(s.pending.Load()) }

// Sessions is the number of open Engine.IO sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Drain refuses new sessions and closes every open one, so their clients
// reconnect (to another node). Pending polls get a close packet, WebSocket
// writers flush what is queued first, bounded by ctx.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		sess.close("server shutting down", closeGraceful)
	}
	for _, sess := range all {
		select {
		case <-sess.flushed:
		case <-ctx.Done():
			return
		}
	}
}

// forwardedHeader marks a request one node passed to another, so that an
// unknown session is answered instead of forwarded again.
const forwardedHeader = "X-Parley-Sio-Forwarded"

// forward passes a request for a session of another node to that node. It
// reports false when the request is to be answered here (no router, a
// session id of this node, or an already forwarded request).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, sid string) bool {
	if s.proxy == nil || r.Header.Get(forwardedHeader) != "" {
		return false
	}
	key, _, ok := strings.Cut(sid, ".")
	if !ok || key == s.cfg.Router.Self() || !validNodeKey(key) {
		return false
	}
	return s.proxy.serve(w, r, key)
}

func validNodeKey(k string) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
