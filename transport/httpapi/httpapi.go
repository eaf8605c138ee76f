// Package httpapi serves Parley's HTTP listener: the JSON API, the dev token
// endpoint, health, metrics, and the WebSocket upgrade.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/protocol"
)

// Check is one dependency readiness probe.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

// Config of the HTTP API.
type Config struct {
	JWTSecret   string
	JWTPrevious []string // still accepted during a secret rotation
	JWTPolicy   auth.Policy
	DevAuth     bool
	NodeID      string
	Checks      []Check
	Web         http.Handler // the browser client, if built in
	Extra       map[string]http.Handler
	// SocketIO serves /socket.io/ (transport/socketio) on gateway nodes.
	SocketIO http.Handler
	// RateLimit and RateBurst bound each user's API calls on this node
	// (CHAT_API_RATE_LIMIT, CHAT_API_RATE_BURST). Zero means 20/s, burst 40.
	RateLimit float64
	RateBurst int
}

// API is the HTTP handler of a node.
type API struct {
	cfg      Config
	verifier auth.Verifier
	svc      *gateway.Service
	ws       *gateway.WSServer
	log      *slog.Logger
	limiter  *userLimiter
}

// New builds the handler. svc and ws are nil on nodes without the gateway
// role; they then serve only health and metrics.
func New(cfg Config, svc *gateway.Service, ws *gateway.WSServer, log *slog.Logger) http.Handler {
	a := &API{cfg: cfg, verifier: auth.NewVerifier(cfg.JWTSecret, cfg.JWTPrevious...).With(cfg.JWTPolicy), svc: svc, ws: ws, log: log,
		limiter: newUserLimiter(cfg.RateLimit, cfg.RateBurst)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": cfg.NodeID})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	for p, h := range cfg.Extra {
		mux.Handle(p, h)
	}
	if svc != nil {
		mux.HandleFunc("POST /api/v1/dev/token", a.devToken)
		mux.HandleFunc("GET /api/v1/conversations", a.authed("conversation.list", a.listConversations))
		mux.HandleFunc("GET /api/v1/conversations/{id}/messages", a.authed("history", a.listMessages))
		mux.HandleFunc("POST /api/v1/conversations/{id}/messages", a.authed("message.send", a.postMessage))
		mux.HandleFunc("GET /ws", a.upgrade)
		if cfg.SocketIO != nil {
			// Per method: a method-less pattern would conflict with "GET /".
			for _, m := range []string{"GET", "POST", "OPTIONS"} {
				mux.Handle(m+" /socket.io/", cfg.SocketIO)
			}
		}
		if cfg.Web != nil {
			mux.Handle("GET /", cfg.Web)
		}
	}
	return mux
}

// ready is the public readiness probe: which dependencies are down, by
// name only (their errors name hosts; the ops listener's /readyz has them).
func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	down := probe(r.Context(), a.cfg.Checks)
	if len(down) > 0 {
		names := slices.Sorted(maps.Keys(down))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": names, "node_id": a.cfg.NodeID})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "node_id": a.cfg.NodeID})
}

func (a *API) devToken(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.DevAuth {
		writeError(w, fmt.Errorf("%w: dev tokens are disabled (CHAT_DEV_AUTH=false)", domain.ErrNotFound))
		return
	}
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := domain.ValidateUserID("user_id", req.UserID); err != nil {
		writeError(w, err)
		return
	}
	ttl := 24 * time.Hour
	if max := a.cfg.JWTPolicy.MaxLifetime; max > 0 {
		ttl = min(ttl, max)
	}
	tok, err := auth.MintFor(a.cfg.JWTSecret, req.UserID, ttl, a.cfg.JWTPolicy)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (a *API) upgrade(w http.ResponseWriter, r *http.Request) {
	id, err := a.verifier.Identify(auth.FromRequest(r, true))
	if err != nil {
		writeError(w, err)
		return
	}
	a.ws.Serve(w, r, id.User, id.Expires)
}

var errRateLimited = fmt.Errorf("%w: too many API calls, retry after the Retry-After header's seconds", domain.ErrRateLimited)

// authed verifies the bearer token and counts the call like the
// WebSocket command of the same type.
func (a *API) authed(typ string, h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			code := "ok"
			if rec.status >= 400 {
				code = rec.code
			} else {
				metrics.CommandLatency.WithLabelValues(typ).Observe(time.Since(start).Seconds())
			}
			metrics.Commands.WithLabelValues(typ, code).Inc()
			if rec.err != nil {
				gateway.LogFailure(a.log, rec.failure, rec.err, "protocol", "http", "type", typ, "path", r.URL.Path)
			}
		}()
		user, err := a.verifier.Verify(auth.FromRequest(r, false))
		if err != nil {
			writeError(rec, err)
			return
		}
		if ok, wait := a.limiter.allow(user, time.Now()); !ok {
			metrics.RateLimited.Inc()
			rec.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeError(rec, errRateLimited)
			return
		}
		h(rec, r, user)
	}
}

// statusRecorder remembers the status and error code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	code    string
	failure protocol.ErrorBody // an error to log (with err), see writeError
	err     error
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (a *API) listConversations(w http.ResponseWriter, r *http.Request, user string) {
	q := projections.ConversationsQuery{Cursor: r.URL.Query().Get("cursor")}
	l, err := intParam(r, "limit")
	if l != nil {
		n := int(max(min(*l, 1<<20), -1))
		q.Limit = &n
	}
	var page projections.ConversationPage
	if err == nil {
		page, err = a.svc.Read.Conversations(r.Context(), user, q)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, gateway.ConversationPage(page))
}

func (a *API) listMessages(w http.ResponseWriter, r *http.Request, user string) {
	q := projections.HistoryQuery{ConversationID: r.PathValue("id")}
	var err error
	if q.BeforeSeq, err = intParam(r, "before_seq"); err == nil {
		if q.AfterSeq, err = intParam(r, "after_seq"); err == nil {
			var l *int64
			if l, err = intParam(r, "limit"); err == nil && l != nil {
				n := int(min(max(*l, -1), 1<<20))
				q.Limit = &n
			}
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	msgs, more, err := a.svc.Read.History(r.Context(), user, q)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs, "has_more": more})
}

func (a *API) postMessage(w http.ResponseWriter, r *http.Request, user string) {
	var c commands.SendMessage
	if err := readJSON(r, &c); err != nil {
		writeError(w, err)
		return
	}
	c.ConversationID = r.PathValue("id")
	m, err := a.svc.Cmd.SendMessage.Handle(r.Context(), user, c)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"message": m})
}

func intParam(r *http.Request, name string) (*int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %s must be an integer", domain.ErrBadRequest, name)
	}
	return &n, nil
}

const maxBody = 64 << 10

func readJSON(r *http.Request, into any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", domain.ErrBadRequest, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("%w: body over 64 KiB", domain.ErrTooLarge)
	}
	return protocol.DecodeData(b, into)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err; the text of an unavailable or internal one stays
// out of the reply and is logged (by authed) under the reply's request id.
func writeError(w http.ResponseWriter, err error) {
	body, status, logIt := protocol.Failure(err)
	if rec, ok := w.(*statusRecorder); ok {
		rec.code = body.Code
		if logIt {
			rec.failure, rec.err = body, err
		}
	}
	writeJSON(w, status, map[string]any{"error": body})
}
