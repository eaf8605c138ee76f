// Package sioredis is the socketio.Router of a Parley cluster: every
// gateway node registers its reachable HTTP address in Redis under
// {prefix}:sio:nodes:{key} with a TTL it keeps refreshing, and looks up
// the owner of a Socket.IO session by the key at the front of its id.
package sioredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registration timing: a dead node's entry disappears within TTL.
const (
	TTL      = 30 * time.Second
	refresh  = 10 * time.Second
	cacheFor = 5 * time.Second
)

// ErrUnknownNode means no live node has the key.
var ErrUnknownNode = errors.New("sioredis: unknown node")

// Registry registers this node and finds the others.
type Registry struct {
	rdb    redis.UniversalClient
	prefix string
	self   string
	log    *slog.Logger

	mu    sync.Mutex
	cache map[string]cached
	gone  bool // unregistered: never register again
}

type cached struct {
	url string
	at  time.Time
}

// New builds a registry with a fresh random key for this process, so a
// restarted node never inherits the sessions of its previous life.
func New(rdb redis.UniversalClient, prefix string, log *slog.Logger) *Registry {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Registry{rdb: rdb, prefix: prefix, self: hex.EncodeToString(b), log: log, cache: map[string]cached{}}
}

// Self is this node's key.
func (r *Registry) Self() string { return r.self }

func (r *Registry) key(k string) string { return r.prefix + ":sio:nodes:" + k }

// Lookup returns the base URL of the node with key k.
func (r *Registry) Lookup(ctx context.Context, k string) (string, error) {
	r.mu.Lock()
	c, ok := r.cache[k]
	r.mu.Unlock()
	if ok && time.Since(c.at) < cacheFor {
		return c.url, nil
	}
	addr, err := r.rdb.Get(ctx, r.key(k)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%w: %s", ErrUnknownNode, k)
	}
	if err != nil {
		return "", fmt.Errorf("sioredis: lookup %s: %w", k, err)
	}
	url := "http://" + addr
	r.mu.Lock()
	r.cache[k] = cached{url: url, at: time.Now()}
	r.mu.Unlock()
	return url, nil
}

// Run registers addr (host:port that other nodes can reach) until ctx
// ends, then removes the entry.
func (r *Registry) Run(ctx context.Context, addr string) error {
	register := func() {
		if err := r.register(ctx, addr); err != nil && ctx.Err() == nil {
			r.log.Warn("socket.io node registration failed", "err", err)
		}
	}
	register()
	r.log.Info("socket.io node registered", "node_key", r.self, "addr", addr)
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = r.Unregister(c)
			cancel()
			return nil
		case <-t.C:
			register()
		}
	}
}

// Register writes this node's entry once; Run keeps it fresh. Calling it
// before serving closes the window in which another node could not yet
// route to this one's first sessions.
func (r *Registry) Register(ctx context.Context, addr string) error { return r.register(ctx, addr) }

func (r *Registry) register(ctx context.Context, addr string) error {
	r.mu.Lock()
	gone := r.gone
	r.mu.Unlock()
	if gone {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.rdb.Set(ctx, r.key(r.self), addr, TTL).Err()
}

// Unregister removes this node's entry for good (shutdown): other nodes
// then answer its sessions' requests with "Session ID unknown".
func (r *Registry) Unregister(ctx context.Context) error {
	r.mu.Lock()
	was := r.gone
	r.gone = true
	r.mu.Unlock()
	if was {
		return nil
	}
	if err := r.rdb.Del(ctx, r.key(r.self)).Err(); err != nil {
		return fmt.Errorf("sioredis: unregister: %w", err)
	}
	return nil
}

// Advertise picks the address other nodes use to reach a listener: the
// override when set (CHAT_ADVERTISE_ADDR), else the listen address, with an
// unspecified host (":8080", "[::]:8080") replaced by this machine's first
// non-loopback address, or loopback if it has none.
func Advertise(listen, override string) string {
	if override != "" {
		return override
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	return net.JoinHostPort(localIP(), port)
}

func localIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
