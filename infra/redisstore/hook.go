package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
)

// metricsHook counts Redis errors by command and the connections the pool
// dials. It sees every command of the client, including the fan-out bus's
// stream reads, because the bus shares this client.
type metricsHook struct{}

func (metricsHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			metrics.RedisDials.WithLabelValues("error").Inc()
			return nil, err
		}
		metrics.RedisDials.WithLabelValues("ok").Inc()
		return conn, nil
	}
}

func (metricsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if counted(err) {
			metrics.RedisErrors.WithLabelValues(strings.ToLower(cmd.Name())).Inc()
		}
		return err
	}
}

func (metricsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if counted(err) {
			metrics.RedisErrors.WithLabelValues("pipeline").Inc()
		}
		return err
	}
}

// counted leaves out what is not a failure of Redis: a missing key, a
// blocking read that timed out empty, a caller that gave up, and shutdown.
func counted(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, redis.ErrClosed)
}
