package app

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/transport/gateway"
	"github.com/parley-chat/parley/transport/socketio"
	"github.com/parley-chat/parley/transport/socketio/siochat"
	"github.com/parley-chat/parley/transport/socketio/sioredis"
)

// SocketIO is the node's Socket.IO endpoint (docs/socketio.md): the
// server, the chat namespace on it, and the node registry that lets any
// node forward a long-polling request to the node holding its session.
type SocketIO struct {
	Server *socketio.Server
	Chat   *siochat.Chat
	Nodes  *sioredis.Registry
}

// sioMaxPayload matches the native protocol's 64 KiB frame limit.
const sioMaxPayload = 64 << 10

func (a *App) buildSocketIO(limits *gateway.UserLimits) error {
	nodes := sioredis.New(a.Redis.Client(), a.Cfg.RedisPrefix, a.Log)
	chat, err := siochat.New(siochat.Config{JWTSecret: a.Cfg.JWTSecret, JWTPrevious: a.Cfg.JWTPrevious, JWTPolicy: JWTPolicy(a.Cfg), RateLimit: a.Cfg.RateLimit, RateBurst: a.Cfg.RateBurst, Limits: limits,
		SendQueue: a.Cfg.SendQueue}, a.Hub, a.Service, a.Log)
	if err != nil {
		return err
	}
	srv := socketio.NewServer(socketio.Config{
		MaxPayload: sioMaxPayload,
		// Long-polling drains the queue once per poll: leave room for the
		// pushes that arrive between two polls.
		SendQueue:          4 * max(a.Cfg.SendQueue, 256),
		MaxSessions:        a.Cfg.MaxConns,
		MaxPendingSessions: a.Cfg.SIOMaxPending,
		// Clients send CONNECT right after the handshake; a session that
		// has not authenticated by then only holds resources.
		ConnectTimeout: 10 * time.Second,
		AllowedOrigins: a.Cfg.AllowedOrigins,
		Namespaces:     map[string]socketio.ConnectFunc{"/": chat.Connect},
		Router:         nodes,
		Log:            a.Log,
	})
	a.SIO = &SocketIO{Server: srv, Chat: chat, Nodes: nodes}
	return nil
}

// socketIOHandler is mounted at /socket.io/ on gateway nodes only.
func (a *App) socketIOHandler() http.Handler {
	if a.SIO == nil || !a.Cfg.Has(config.RoleGateway) {
		return nil
	}
	return a.SIO.Server
}

// registerSocketIO registers this node's address at once (before it
// serves), and returns the loop that keeps it registered while it runs.
func (a *App) registerSocketIO(l net.Listener) func(context.Context) error {
	addr := sioredis.Advertise(l.Addr().String(), a.Cfg.AdvertiseAddr)
	if err := a.SIO.Nodes.Register(context.Background(), addr); err != nil {
		a.Log.Warn("socket.io node registration failed; retrying", "err", err)
	}
	return func(ctx context.Context) error { return a.SIO.Nodes.Run(ctx, addr) }
}

// drainSocketIO answers the commands in flight, then closes every
// Socket.IO session so clients reconnect elsewhere, and leaves the node
// registry, bounded by ctx. (It unregisters here, not when the roles stop:
// the Redis client may be closed by then.)
func (a *App) drainSocketIO(ctx context.Context) {
	if a.SIO == nil {
		return
	}
	a.SIO.Chat.Drain(ctx)
	a.SIO.Server.Drain(ctx)
	if err := a.SIO.Nodes.Unregister(ctx); err != nil {
		a.Log.Warn("socket.io node unregistration failed", "err", err)
	}
	a.SIO.Chat.Wait(ctx)
}
