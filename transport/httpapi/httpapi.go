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
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/protocol"
)

// Check is one readiness probe: a dependency, or the node's own state.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
	// Live checks cost nothing (a flag in memory) and run on every
	// request, outside the cached probe: a draining node must leave the
	// load balancer's rotation at once, not a probe later.
	Live bool
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
	svc      *service.Service
	ws       *gateway.WSServer
	log      *slog.Logger
	limiter  *gateway.UserLimits
	running  *inFlight
	pipe     *gateway.Pipeline
	checked  *prober
}

// New builds the handler. svc and ws are nil on nodes without the gateway
// role; they then serve only health and metrics.
func New(cfg Config, svc *service.Service, ws *gateway.WSServer, log *slog.Logger) http.Handler {
	a := &API{cfg: cfg, verifier: auth.NewVerifier(cfg.JWTSecret, cfg.JWTPrevious...).With(cfg.JWTPolicy), svc: svc, ws: ws, log: log,
		limiter: gateway.NewUserLimits(cfg.RateLimit, cfg.RateBurst), running: &inFlight{n: map[string]int{}},
		pipe:    &gateway.Pipeline{Service: svc, Log: log},
		checked: &prober{checks: cfg.Checks}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": cfg.NodeID})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	// What no route serves under /api/ is a JSON error like every other
	// answer there, not the mux's text/plain 404 or 405 or the web client.
	// Per method: a method-less pattern would conflict with "GET /".
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" /api/", noEndpoint)
	}
	for p, h := range cfg.Extra {
		mux.Handle(p, h)
	}
	if svc != nil {
		mux.HandleFunc("POST /api/v1/dev/token", a.devToken)
		mux.HandleFunc("GET /api/v1/conversations", a.command("conversation.list", http.StatusOK, listConversations))
		mux.HandleFunc("GET /api/v1/conversations/{id}/messages", a.command("history", http.StatusOK, listMessages))
		mux.HandleFunc("GET /api/v1/search", a.command("search", http.StatusOK, search))
		mux.HandleFunc("POST /api/v1/conversations/{id}/messages", a.command("message.send", http.StatusCreated, postMessage))
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
	down := a.checked.probe(r.Context())
	if len(down) > 0 {
		names := slices.Sorted(maps.Keys(down))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": names, "node_id": a.cfg.NodeID})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "node_id": a.cfg.NodeID})
}

func noEndpoint(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("%w: no endpoint %s %s", domain.ErrNotFound, r.Method, r.URL.Path))
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
	if err == nil {
		err = id.OpensAt(time.Now())
	}
	if err != nil {
		writeError(w, err)
		return
	}
	a.ws.Serve(w, r, id.User, id.Expires)
}

var errRateLimited = fmt.Errorf("%w: too many API calls, retry after the Retry-After header's seconds", domain.ErrRateLimited)

// MaxAPIInFlight bounds a user's API calls running at once on a node,
// counting until the response is written: a call's reply (a history page
// is up to about 3 MB once escaped) stays in memory until the client reads
// it, and at the rate limit a client that reads nothing had about 1 200
// replies in flight within the 60 s write timeout.
const MaxAPIInFlight = 8

var errTooManyAtOnce = fmt.Errorf("%w: at most %d API calls at once per user; wait for an answer", domain.ErrRateLimited, MaxAPIInFlight)

// inFlight counts each user's API calls running on this node.
type inFlight struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *inFlight) acquire(user string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[user] >= MaxAPIInFlight {
		return false
	}
	f.n[user]++
	return true
}

func (f *inFlight) release(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[user]--; f.n[user] <= 0 {
		delete(f.n, user)
	}
}

// command serves a route as the protocol command typ, through the same
// pipeline as WebSocket and Socket.IO: translate reads the request into
// the command's data, and status is the code of a success.
func (a *API) command(typ string, status int, translate func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call := gateway.Call{Protocol: "http", Type: typ, Attrs: []any{"path", r.URL.Path}}
		user, err := a.verifier.Verify(auth.FromRequest(r, false))
		var data any
		if err == nil {
			call.User = user
			data, err = translate(r)
		}
		if err == nil {
			call.Data, err = json.Marshal(data)
		}
		if err != nil {
			writeResult(w, a.pipe.Fail(call, err), status)
			return
		}
		if !a.running.acquire(user) {
			w.Header().Set("Retry-After", "1")
			writeResult(w, a.pipe.Fail(call, errTooManyAtOnce), status)
			return
		}
		defer a.running.release(user) // after the response is written
		call.Limit = func(int) error {
			ok, wait := a.limiter.Allow(user, 1, time.Now())
			if !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				return errRateLimited
			}
			return nil
		}
		writeResult(w, a.pipe.Run(r.Context(), call), status)
	}
}

// writeResult writes a command's result: its data with status, or its
// error.
func writeResult(w http.ResponseWriter, res gateway.Result, status int) {
	if res.Err != nil {
		writeJSON(w, res.Status, map[string]any{"error": res.Err})
		return
	}
	writeJSON(w, status, res.Data)
}

// GET /api/v1/conversations?limit=&cursor= is conversation.list.
func listConversations(r *http.Request) (any, error) {
	d := map[string]any{}
	if c := r.URL.Query().Get("cursor"); c != "" {
		d["cursor"] = c
	}
	l, err := intParam(r, "limit")
	if l != nil {
		d["limit"] = *l
	}
	return d, err
}

// GET /api/v1/conversations/{id}/messages?before_seq=&after_seq=&limit= is
// history.
func listMessages(r *http.Request) (any, error) {
	d := map[string]any{"conversation_id": r.PathValue("id")}
	for _, name := range []string{"before_seq", "after_seq", "limit"} {
		v, err := intParam(r, name)
		if err != nil {
			return nil, err
		}
		if v != nil {
			d[name] = *v
		}
	}
	return d, nil
}

// GET /api/v1/search?query=&conversation_id=&before_seq=&limit=&cursor= is
// search.
func search(r *http.Request) (any, error) {
	q := r.URL.Query()
	d := map[string]any{"query": q.Get("query")}
	for _, name := range []string{"conversation_id", "cursor"} {
		if v := q.Get(name); v != "" {
			d[name] = v
		}
	}
	for _, name := range []string{"before_seq", "limit"} {
		v, err := intParam(r, name)
		if err != nil {
			return nil, err
		}
		if v != nil {
			d[name] = *v
		}
	}
	return d, nil
}

// POST /api/v1/conversations/{id}/messages {"client_msg_id", "body"} is
// message.send.
func postMessage(r *http.Request) (any, error) {
	var c commands.SendMessage
	if err := readJSON(r, &c); err != nil {
		return nil, err
	}
	c.ConversationID = r.PathValue("id")
	return c, nil
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
	if !utf8.Valid(b) {
		// encoding/json would silently replace invalid bytes (two
		// client_msg_ids would become one); refuse, as a frame is refused.
		return fmt.Errorf("%w: body is not valid UTF-8", domain.ErrBadRequest)
	}
	return protocol.DecodeData(b, into)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err (outside commands: the dev token, the upgrade).
func writeError(w http.ResponseWriter, err error) {
	body, status := protocol.ToError(err)
	writeJSON(w, status, map[string]any{"error": body})
}
