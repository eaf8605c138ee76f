package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// Redis is a private redis-server on a random port, without persistence:
// a restart loses every key, which Parley must survive (Redis is
// rebuildable).
type Redis struct {
	Proc
	Port int
}

// NewRedis prepares dir/redis; the server logs to dir/logs/redis.log.
func NewRedis(dir string) (*Redis, error) {
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, "redis")
	if err := mkdirs(rdir, filepath.Join(dir, "logs")); err != nil {
		return nil, err
	}
	r := &Redis{Port: port}
	r.Name, r.Log = "redis", filepath.Join(dir, "logs", "redis.log")
	r.Mk = func() *exec.Cmd {
		return exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", rdir, "--daemonize", "no", "--protected-mode", "no")
	}
	return r, nil
}

// URL is the server's CHAT_REDIS_URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// WaitReady waits until the server answers PING.
func (r *Redis) WaitReady(ctx context.Context, limit time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port), MaxRetries: -1})
	defer c.Close()
	return poll.Err(ctx, limit, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return c.Ping(cctx).Err()
	})
}
