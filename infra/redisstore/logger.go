package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own log lines (pool dial failures and the
// like) to log, so that the process writes structured lines only. go-redis
// has one unsynchronised logger per process, so only the first call counts.
func SetLogger(log *slog.Logger) {
	loggerOnce.Do(func() { redis.SetLogger(slogLogger{log.With("component", "go-redis")}) })
}

var loggerOnce sync.Once

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", strings.TrimSpace(fmt.Sprintf(format, v...)))
}
