// Package app wires Parley's parts for the roles a process runs; it is the
// one place that knows every adapter.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/httpapi"
)

// App is a running Parley process.
type App struct {
	Cfg      config.Config
	Log      *slog.Logger
	KafkaLog *kafkalog.Log
	Redis    *redisstore.Store
	Pool     *pgxpool.Pool
	Store    *projections.Store
	Bus      *fanoutbus.Bus
	Hub      *gateway.Hub
	Presence *gateway.Presence
	WS       *gateway.WSServer
	Service  *service.Service
	SIO      *SocketIO // Socket.IO endpoint (socketio.go)
	Handler  http.Handler
	// Web, if set before Run, serves the browser client at /.
	Web http.Handler

	listener    net.Listener
	opsListener net.Listener // nil when CHAT_OPS_ADDR=off
	closers     []func() error
}

// JWTPolicy is what client tokens are checked for besides signature and exp.
func JWTPolicy(c config.Config) auth.Policy {
	return auth.Policy{Audience: c.JWTAudience, Issuer: c.JWTIssuer, MaxLifetime: c.JWTMaxLifetime}
}

// KafkaConfig derives the Kafka adapter's config, security included: every
// Kafka client of the process is built from it.
func KafkaConfig(c config.Config) kafkalog.Config {
	return kafkalog.Config{Brokers: c.KafkaBrokers, Topic: c.Topic, Partitions: c.Partitions,
		ReplicationFactor: c.ReplicationFactor, MinInsyncReplicas: c.MinInsyncReplicas, Linger: c.ProduceLinger, ExpectWait: c.ProduceExpectWait, Compression: c.Compression,
		ClientID: "parley-" + c.NodeID,
		Security: kafkalog.Security{Mechanism: c.KafkaSASLMechanism, User: c.KafkaSASLUser, Password: c.KafkaSASLPassword,
			TLS: c.KafkaTLS, CAFile: c.KafkaTLSCA}}
}

// New connects the adapters every role needs. Kafka and Redis must answer
// within a bounded time; Postgres may be down (the pool connects lazily).
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	a := &App{Cfg: cfg, Log: log}
	var err error
	a.KafkaLog, err = retry(ctx, 30*time.Second, func() (*kafkalog.Log, error) { return kafkalog.Open(KafkaConfig(cfg)) })
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.KafkaLog.Close)
	redisstore.SetLogger(log) // go-redis's own lines become JSON too
	a.Redis, err = redisstore.Open(ctx, cfg.RedisURL, cfg.RedisPrefix)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.closers = append(a.closers, a.Redis.Close)
	a.Pool, err = pgstore.Open(ctx, cfg.DatabaseURL, config.DBPoolSize)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.closers = append(a.closers, func() error { a.Pool.Close(); return nil })
	a.Store = projections.NewStore(a.Pool, cfg.DBSchema, cfg.Topic)
	a.Store.OnGuardedRetry = metrics.ProjectorGuardedRetries.Inc
	a.Store.OnRetry = func(err error, backoff time.Duration) {
		log.Warn("projection batch failed; retrying", "err", err, "retry_in", backoff)
	}
	a.Store.OnSetAside = func(r projections.Record, cause error) {
		metrics.ProjectorSetAside.Inc()
		log.Error("event set aside: the read models cannot hold it", "partition", r.Partition, "offset", r.Offset,
			"event_id", r.Event.ID, "type", r.Event.Type, "conversation_id", r.Event.ConversationID, "err", cause)
	}
	// Readers follow the active read-model pointer, which a replay switches
	// (projector batches follow it in their own transaction).
	stopFollow := a.Store.FollowActive(time.Second, log)
	a.closers = append(a.closers, func() error { stopFollow(); return nil })
	go checkReadModels(a.Pool, a.Store.Schema(), log)
	a.Bus, err = fanoutbus.New(a.Redis.Client(), fanoutbus.Config{Prefix: cfg.RedisPrefix}, log)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.closers = append(a.closers, a.Bus.Close)
	if err := a.startHandoff(); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.buildGateway(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// startHandoff passes every record this process appends to the fan-out
// through Redis as soon as Kafka acked it (infra/handoff).
func (a *App) startHandoff() error {
	w, err := handoff.NewWriter(a.Redis.WriteBehind(), a.handoffConfig())
	if err != nil {
		return err
	}
	a.KafkaLog.SetHandoff(w.Offer)
	return nil
}

func (a *App) handoffConfig() handoff.Config { return handoff.Config{Prefix: a.Cfg.RedisPrefix} }

func (a *App) buildGateway() error {
	fresh := projections.Freshness{Store: a.Store, Log: a.KafkaLog}
	h := commands.New(commands.Deps{Log: a.KafkaLog, Members: a.Redis, Read: a.Store, Fresh: fresh,
		Idem: a.Redis, Ephemeral: a.Bus, Locks: a.Redis, PendingStale: a.Cfg.IdemPendingStale})
	a.Service = &service.Service{Cmd: h, Read: projections.Reader{Store: a.Store, Access: h.Access, Fresh: fresh,
		Searches: projections.NewSearchLimit(a.Cfg.SearchConcurrency), SearchTimeout: a.Cfg.SearchTimeout}}
	a.Hub = gateway.NewHub(a.Cfg.MaxConnsPerUser, a.Cfg.MaxConns)
	a.Hub.StreamOf = func(string) string { return "" } // one stream per node
	node := a.Bus.Node(a.Cfg.NodeID)
	a.Presence = gateway.NewPresence(node, node, a.Store, a.Bus, a.Cfg.PresenceDebounce, a.Log.With("role", "gateway"))
	a.Presence.Days = a.Store
	a.Hub.Routes = a.Presence
	a.Service.Presence = presenceSources{a.Store, a.Bus}
	// One rate limit per user on this node, over both WebSocket protocols.
	limits := gateway.NewUserLimits(a.Cfg.RateLimit, a.Cfg.RateBurst)
	var err error
	a.WS, err = gateway.NewWSServer(gateway.WSConfig{SendQueue: a.Cfg.SendQueue, RateLimit: a.Cfg.RateLimit,
		RateBurst: a.Cfg.RateBurst, Limits: limits, AllowedOrigins: a.Cfg.AllowedOrigins, PingInterval: a.Cfg.PingInterval}, a.Hub, a.Service, a.Log)
	if err != nil {
		return err
	}
	return a.buildSocketIO(limits)
}

func (a *App) checks() []httpapi.Check {
	var cs []httpapi.Check
	cs = append(cs, httpapi.Check{Name: "kafka", Ping: a.KafkaLog.Ping})
	if a.Cfg.Has(config.RoleGateway) || a.Cfg.Has(config.RoleFanout) {
		cs = append(cs, httpapi.Check{Name: "redis", Ping: a.Redis.Ping})
	}
	if a.Cfg.Has(config.RoleGateway) || a.Cfg.Has(config.RoleProjector) {
		cs = append(cs, httpapi.Check{Name: "postgres", Ping: a.Store.Ping})
	}
	if a.WS != nil {
		cs = append(cs, httpapi.Check{Name: "draining", Live: true, Ping: func(context.Context) error {
			if a.WS.Draining() {
				return errors.New("the node is shutting down")
			}
			return nil
		}})
	}
	return cs
}

// Listen binds the HTTP address and the ops address (":0" picks a free
// port).
func (a *App) Listen() (string, error) {
	l, err := net.Listen("tcp", a.Cfg.HTTPAddr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", a.Cfg.HTTPAddr, err)
	}
	if a.Cfg.OpsAddr != "off" {
		ol, err := net.Listen("tcp", a.Cfg.OpsAddr)
		if err != nil {
			l.Close()
			return "", fmt.Errorf("listen CHAT_OPS_ADDR %s: %w", a.Cfg.OpsAddr, err)
		}
		a.opsListener = ol
	}
	// Every accepted connection holds a goroutine and buffers: their number
	// is bounded, not only the upgraded ones the hub counts.
	a.listener = newLimitListener(l, a.Cfg.HTTPConnsLimit())
	return l.Addr().String(), nil
}

// OpsAddr is the address the ops listener is bound to ("" if none).
func (a *App) OpsAddr() string {
	if a.opsListener == nil {
		return ""
	}
	return a.opsListener.Addr().String()
}

// maxHeaderBytes bounds a request's headers: a token is at most 4 KiB
// (transport/auth), and a browser's cookies for this origin are few.
// Larger headers get 431.
const maxHeaderBytes = 64 << 10

// Run serves the roles until ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	if a.listener == nil {
		if _, err := a.Listen(); err != nil {
			return err
		}
	}
	var svc *service.Service
	var ws *gateway.WSServer
	if a.Cfg.Has(config.RoleGateway) {
		svc, ws = a.Service, a.WS
	}
	a.Handler = httpapi.New(httpapi.Config{JWTSecret: a.Cfg.JWTSecret, JWTPrevious: a.Cfg.JWTPrevious, JWTPolicy: JWTPolicy(a.Cfg),
		DevAuth: a.Cfg.DevAuth, NodeID: a.Cfg.NodeID,
		Checks: a.checks(), Web: a.Web, SocketIO: a.socketIOHandler(),
		RateLimit: a.Cfg.APIRateLimit, RateBurst: a.Cfg.APIRateBurst}, svc, ws, a.Log)
	// A client that trickles its request headers (slowloris) is cut off.
	// So is one that trickles its body, or does not read its response (a
	// WebSocket upgrade clears both deadlines). Headers are bounded at
	// maxHeaderBytes, not Go's 1 MiB.
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: a.Cfg.HeaderTimeout, ReadTimeout: a.Cfg.BodyTimeout,
		WriteTimeout: a.Cfg.WriteTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: maxHeaderBytes}

	roleCtx, stopRoles := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRoles()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(roleCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if a.Cfg.Has(config.RoleGateway) {
		if err := a.startDelivery(roleCtx); err != nil {
			return err
		}
		start("socketio-nodes", a.registerSocketIO(a.listener))
	}
	if a.Cfg.Has(config.RoleFanout) {
		start("fanout", a.runFanout)
	}
	if a.Cfg.Has(config.RoleProjector) {
		start("projector", a.runProjector)
	}
	var ops *http.Server
	if a.opsListener != nil {
		ops = httpapi.OpsServer(httpapi.Ops(a.Cfg.NodeID, a.checks(), a.Cfg.Pprof))
		go func() { _ = ops.Serve(a.opsListener) }()
		defer ops.Close()
	}
	go a.watchReadiness(roleCtx) // parley_ready, parley_dependency_up (ops.go)
	go func() {
		if err := srv.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	}()
	if a.Cfg.DevAuth && a.Cfg.Has(config.RoleGateway) {
		a.Log.Warn("dev auth is on (CHAT_DEV_AUTH=true): POST /api/v1/dev/token mints a token for any user to anyone who reaches this node; never in a deployment")
	}
	a.Log.Info("node started", "addr", a.listener.Addr().String(), "ops_addr", a.OpsAddr(), "pprof", a.Cfg.Pprof, "roles", a.Cfg.Roles)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	a.shutdown(srv)
	stopRoles()
	wg.Wait()
	return runErr
}

// startDelivery proves this node alive, reads its delivery stream and keeps
// the liveness fresh. If Redis lost the node's liveness (and so its routes),
// the routes are made again; if a fan-out had dropped them, deliveries for
// its users were dropped unseen, and every local client resyncs.
func (a *App) startDelivery(ctx context.Context) error {
	node := a.Bus.Node(a.Cfg.NodeID)
	// Before Alive (which registers the node) and before any connection:
	// whatever this id holds in presence is a previous run's.
	previous, err := node.ForgetPrevious(ctx, time.Now(), a.Presence.Debounce)
	if err != nil {
		return err
	}
	if _, err := node.Alive(ctx); err != nil {
		return err
	}
	if err := a.Bus.Subscribe(ctx, a.Cfg.NodeID, a.Hub.Deliver); err != nil {
		return err
	}
	a.Presence.Start(ctx)
	if len(previous) > 0 {
		a.Log.Warn("users of this node's previous run taken offline", "users", len(previous))
		go a.Presence.AnnounceAll(ctx, domain.PresenceOffline, previous)
	}
	go every(ctx, presenceSweep, func() { a.sweepPresence(ctx) })
	// Its own loop: a Redis shard that does not answer must not hold up
	// the liveness refresh, or peers would sweep a healthy node.
	go every(ctx, fanoutbus.AliveEvery, func() { a.Hub.ReconcilePresence(ctx) })
	go every(ctx, fanoutbus.AliveEvery, func() { a.checkLiveness(ctx, node) })
	return nil
}

// checkLiveness refreshes this node's liveness and routes its users again
// if Redis lost them.
func (a *App) checkLiveness(ctx context.Context, node *fanoutbus.Node) {
	lost, dropped, _ := node.Check(ctx)
	if !lost && !dropped {
		return // all well, or Redis away: nothing is delivered until it is back
	}
	// Redis lost its data (the fan-out sends to every node until the
	// routes are back), or this node stalled and a fan-out dropped its
	// routes (then deliveries were dropped: its clients resync).
	missed, err := a.Hub.Rejoin(ctx, fanoutbus.RejoinWithin)
	if missed > 0 {
		a.Log.Warn("users not routed again while the fan-out sent to every node: their connections are told to reconnect and sync",
			"users", missed, "within", fanoutbus.RejoinWithin.String(), "err", err)
	}
	a.Log.Warn("this node's routes were lost or dropped; its users are routed again",
		"liveness_lost", lost, "routes_were_dropped", dropped)
	if dropped {
		a.Hub.ResyncAll()
	}
}

// presenceSweep is how often a gateway looks for dead nodes whose users
// must go offline: with the nodes' 30 s liveness, within 45 s of a death.
const presenceSweep = 15 * time.Second

// sweepPresence announces offline the users of gateway nodes that died.
func (a *App) sweepPresence(ctx context.Context) {
	gone, err := a.Bus.SweepDead(ctx, time.Now(), a.Presence.Debounce)
	if err != nil {
		a.Log.Warn("presence sweep failed", "err", err)
	}
	a.Presence.AnnounceAll(ctx, domain.PresenceOffline, gone)
}

// presenceSources answers presence.query from the read model and Redis.
type presenceSources struct {
	store *projections.Store
	bus   *fanoutbus.Bus
}

func (p presenceSources) SharedWith(ctx context.Context, user string, others []string) (map[string]bool, error) {
	return p.store.SharedWith(ctx, user, others)
}

func (p presenceSources) Presence(ctx context.Context, users []string) (map[string]domain.Seen, error) {
	return p.bus.Presence(ctx, users)
}

// shutdown stops accepting, asks clients to reconnect elsewhere, drains
// in-flight commands, all within the configured bound.
func (a *App) shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), a.Cfg.ShutdownTimeout)
	defer cancel()
	a.WS.Drain(ctx)
	a.drainSocketIO(ctx)
	_ = srv.Shutdown(ctx)
	a.Log.Info("node stopped")
}

// Close releases the adapters.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i]()
	}
	a.closers = nil
}

func retry[T any](ctx context.Context, limit time.Duration, f func() (T, error)) (T, error) {
	deadline := time.Now().Add(limit)
	for {
		v, err := f()
		if err == nil || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkReadModels warns, once at start and in the background (Postgres may
// be down), when the active read models lack migrations this binary
// expects: its statements may fail until `chatctl migrate` runs.
func checkReadModels(pool *pgxpool.Pool, schema string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pgstore.CheckVersion(ctx, pool, schema)
	switch {
	case errors.Is(err, pgstore.ErrSchemaBehind):
		log.Warn("read-model migrations missing", "schema", schema, "err", err)
	case err != nil:
		log.Info("read-model version not checked", "schema", schema, "err", err)
	}
}
