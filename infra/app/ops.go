package app

import (
	"context"
	"strconv"
	"time"

	"github.com/parley-chat/parley/infra/metrics"
)

// How often the operational gauges are refreshed. Scrapes are typically
// every 15 s, so 5 s keeps them fresh without loading Kafka or Redis.
const opsInterval = 5 * time.Second

// watchReadiness runs this node's readiness checks in the background and
// publishes parley_ready and parley_dependency_up, so that readiness can be
// alerted on without anything probing /readyz.
func (a *App) watchReadiness(ctx context.Context) {
	every(ctx, opsInterval, func() {
		ready := 1.0
		for _, c := range a.checks() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.Ping(cctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			up := 1.0
			if err != nil {
				up, ready = 0, 0
			}
			metrics.DependencyUp.WithLabelValues(c.Name).Set(up)
		}
		metrics.Ready.Set(ready)
	})
}

// watchLag publishes the consumer lag of group per partition. Every instance
// of the role reports the whole group, so dashboards take the max across
// instances per partition. It runs for the fanout group (runFanout); the
// projector's lag is left to the projector's own loop (issue 4), which sees
// its claims' high-water marks. If that is never built, start this for
// ProjectorGroup in runProjector too: the alerts and dashboard need no change.
func (a *App) watchLag(ctx context.Context, group string) {
	every(ctx, opsInterval, func() {
		lag, err := a.KafkaLog.GroupLag(ctx, group)
		if err != nil {
			return // Kafka is down: readiness and produce errors say so
		}
		for p, n := range lag {
			metrics.ConsumerLag.WithLabelValues(group, strconv.Itoa(int(p))).Set(float64(n))
		}
	})
}

// every calls f at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
