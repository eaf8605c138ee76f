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
func NewLate(redis.UniversalClient, *slog.Logger, string) *Late { return nil }

// Write never writes off Linux.
func (l *Late) Write([]byte, int) bool { return false }

// Drain does nothing off Linux.
func (l *Late) Drain() {}

// Close does nothing off Linux.
func (l *Late) Close() {}

// Mark says where a write's replies end (late.go).
type Mark struct{ Gen, End uint64 }

// WriteMarked never writes off Linux.
func (l *Late) WriteMarked([]byte, int) (Mark, bool) { return Mark{}, false }

// Progress reports no connection off Linux.
func (l *Late) Progress() (gen, read, refusedAt uint64) { return 0, 0, 0 }

// Await does nothing off Linux.
func (l *Late) Await() {}

// Drop does nothing off Linux.
func (l *Late) Drop() {}

// Owed is 0 off Linux.
func (l *Late) Owed() int { return 0 }
