//go:build !linux

package redisstore

import (
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Late needs Linux's blocking sockets (late.go); elsewhere the writes go
// through go-redis pipelines.
type Late struct{}

// NewLate is nil off Linux.
func NewLate(redis.UniversalClient, *slog.Logger) *Late { return nil }

// Write never writes off Linux.
func (l *Late) Write([]byte, int) bool { return false }

// Drain does nothing off Linux.
func (l *Late) Drain() {}

// Close does nothing off Linux.
func (l *Late) Close() {}
