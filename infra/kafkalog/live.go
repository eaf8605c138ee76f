package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// GroupSession and GroupHeartbeat are every Parley consumer group's
// session timeout and heartbeat: a member that stops heartbeating (killed,
// or stalled that long) loses its partitions to the others after
// GroupSession. Shorter takes over faster and risks a rebalance on a long
// stall; the brokers' group.min.session.timeout.ms must allow it. 2.5 s
// (five heartbeats) puts a killed fan-out's takeover, session plus
// rebalance, under the 3 s that issue 15 asks of any process's failover.
const (
	GroupSession   = 2500 * time.Millisecond
	GroupHeartbeat = 500 * time.Millisecond
)

// LiveConfig of a latency-first consumer group (the fan-out).
type LiveConfig struct {
	// Kafka names the brokers, the topic, the client id and the security.
	Kafka Config
	Group string
	// MaxBatch bounds the records handed over at once (default 5000).
	MaxBatch int
	// Forget, if set, is told of partitions assigned or taken away, so
	// that state derived from them is reloaded.
	Forget func(partitions []int32)
	// Handoff, if set, reads the records producers handed off for the
	// given partitions (Log.SetHandoff), waiting up to about a second for
	// one. The handler then gets records as soon as they are handed off,
	// in log order, and the log is read in large, infrequent fetches only
	// to fill what the hand-off missed (runMerged).
	Handoff func(ctx context.Context, partitions []int32) ([]Consumed, error)
	// FromLog, if set, is called before each handler call whose batch may
	// hold records the log brought first (nobody had handed them off yet):
	// they are not ordered with anything the hand-off's channels carried.
	FromLog func()
	// Gather is how long the hand-off reader lets records gather after a
	// read that returned some, before it reads again: one read and one
	// handler call per Gather under load instead of one per record, for
	// at most that much latency. 0 reads again at once.
	Gather time.Duration
	// Settle, if set, is called before each commit of the offsets handled
	// (with the hand-off only): an error skips the commit, so that what
	// the handler took but did not finish (replies it reads late) is
	// redelivered after a crash. Called once a second, also to let the
	// handler finish such work.
	Settle func(ctx context.Context) error
}

// Validate reports a config the consumer cannot work with.
func (c LiveConfig) Validate() error {
	if err := c.Kafka.validateConsumer(); err != nil {
		return err
	}
	switch {
	case c.Group == "":
		return errors.New("kafkalog: a live consumer needs a group")
	case c.MaxBatch < 1:
		return fmt.Errorf("kafkalog: max batch %d below 1", c.MaxBatch)
	case c.Gather < 0 || c.Gather > time.Second:
		return fmt.Errorf("kafkalog: gather %s outside 0-1s", c.Gather)
	case c.Settle != nil && c.Handoff == nil:
		return errors.New("kafkalog: Settle needs the hand-off's consumer")
	}
	return nil
}

// Fetch settings of a consumer that has the hand-off: the log fills gaps,
// so it is read at most every HandoffLogWait or per 1 MiB, whichever
// comes first. HandoffLogWait is also what a record nobody handed off
// (its producer died after the ack) waits at most beyond the records
// before it, and how late live delivery resumes after a rebalance.
const (
	HandoffLogWait     = 250 * time.Millisecond
	handoffLogMinBytes = 1 << 20
	maxPendingHandoff  = 32 << 20 // bytes across partitions: records held ahead of a gap
)

// RunLive consumes the topic in a group with franz-go and hands the
// handler whatever has arrived, across partitions, in log order per
// partition: one record alone at low load, thousands at high load, with no
// linger. A fetch returns as soon as one record is there, so waiting long
// for the next costs no latency and keeps an idle consumer quiet. A batch
// is retried until the handler takes it; its offsets are committed after
// (at least once: the handler must be idempotent).
//
// Sarama through watermill-kafka, the fan-out's first consumer, handed over
// one message per partition at a time and polled every 10 ms when idle
// (docs/architecture.md).
func RunLive(ctx context.Context, cfg LiveConfig, handle BatchHandler, log *slog.Logger) error {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 5000
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Handoff != nil {
		return runMerged(ctx, cfg, handle, log)
	}
	forget := func(ps []int32) {
		if cfg.Forget != nil {
			cfg.Forget(ps)
		}
	}
	cl, err := newGroupClient(cfg, groupCallbacks{
		assigned: func(ps []int32) { forget(ps) },
		revoked:  func(ps []int32) { forget(ps) },
	}, log, kgo.FetchMaxWait(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	var batch []Consumed
	var recs []*kgo.Record
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, cfg.MaxBatch)
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		batch, recs = batch[:0], recs[:0]
		fs.EachRecord(func(r *kgo.Record) {
			batch = append(batch, Consumed{Partition: r.Partition, Offset: r.Offset, Value: r.Value})
			recs = append(recs, r)
		})
		if len(batch) > 0 && handleUntilDone(ctx, batch, handle, log) {
			cl.MarkCommitRecords(recs...)
		}
		cl.AllowRebalance()
	}
	return ctx.Err()
}

// handleUntilDone retries a batch with backoff until it is handled or ctx
// ends (false).
func handleUntilDone(ctx context.Context, batch []Consumed, handle BatchHandler, log *slog.Logger) bool {
	backoff := 50 * time.Millisecond
	for {
		err := handle(ctx, batch)
		if err == nil {
			return true
		}
		log.Warn("batch failed; retrying", "records", len(batch), "err", err, "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// groupCallbacks are told of the topic's partitions as the group moves
// them; revoked runs before the marked offsets are committed.
type groupCallbacks struct {
	assigned, revoked func(partitions []int32)
	// lost, if set, replaces revoked for partitions lost without a revoke
	// (the member's session expired).
	lost func(partitions []int32)
	// ownCommits: the consumer commits by itself (no franz-go autocommit
	// of marks, and no commit of marks on revoke).
	ownCommits bool
}

// newGroupClient is the franz-go client of a live consumer group.
func newGroupClient(cfg LiveConfig, cb groupCallbacks, log *slog.Logger, fetch ...kgo.Opt) (*kgo.Client, error) {
	topic := cfg.Kafka.Topic
	opts, err := cfg.Kafka.franzOpts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Range, as the Sarama members it replaces: a rolling upgrade joins one group.
		kgo.Balancers(kgo.RangeBalancer()),
		// A dead member's partitions move after the session timeout, so
		// it is short (the brokers allow 2 s, infra/kafka/server.properties):
		// live delivery pauses about 3-4 s after a fan-out dies.
		kgo.SessionTimeout(GroupSession),
		kgo.HeartbeatInterval(GroupHeartbeat),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { cb.assigned(m[topic]) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			cb.revoked(m[topic])
			if cb.ownCommits {
				return
			}
			// Commit what was handled before the partitions move on.
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				log.Warn("commit on revoke failed", "err", err)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if cb.lost != nil {
				cb.lost(m[topic])
				return
			}
			cb.revoked(m[topic])
		}),
	)
	if cb.ownCommits {
		opts = append(opts, kgo.DisableAutoCommit())
	} else {
		opts = append(opts, kgo.AutoCommitMarks(), kgo.AutoCommitInterval(time.Second))
	}
	cl, err := kgo.NewClient(append(opts, fetch...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer %s: %w", cfg.Group, err)
	}
	return cl, nil
}
