package app

import (
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
)

// projectorGCPercent is the GOGC of a process that only projects. Its live
// heap is a few batches of records, so letting the heap grow to five times
// that before collecting costs about 15 MB and saves a fifth of the
// projector's CPU: 19-21 against 25 µs a message at 1 000 msg/s
// (docs/benchmarks.md, "Session 10"). A gateway keeps the default: its heap
// is its connections, and five times that is not small.
const projectorGCPercent = 400

// gcPercentFor is the GOGC to set for a process running roles, or 0 to keep
// the runtime's; an operator's GOGC always wins.
func gcPercentFor(roles []string, gogc string) int {
	if gogc != "" || !slices.Equal(roles, []string{"projector"}) {
		return 0
	}
	return projectorGCPercent
}

// TuneGC applies gcPercentFor to this process (chatd calls it at start).
func TuneGC(roles []string, log *slog.Logger) {
	if p := gcPercentFor(roles, os.Getenv("GOGC")); p > 0 {
		debug.SetGCPercent(p)
		log.Info("garbage collector tuned for a projector-only process", "gogc", p)
	}
}
