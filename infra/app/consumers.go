package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/fanout"
	"github.com/parley-chat/parley/infra/fanoutbus"
	"github.com/parley-chat/parley/infra/handoff"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/projections"
)

// Consumer group and handler names never change once deployed: renaming one
// reconsumes the log.
const (
	FanoutGroup    = "parley.fanout"
	ProjectorGroup = "parley.projector"
)

// runFanout consumes the log with a latency-first group consumer and hands
// each batch to the gateway nodes through Redis in one pipeline.
func (a *App) runFanout(ctx context.Context) error {
	if err := a.Bus.WatchLoss(ctx, a.Cfg.NodeID); err != nil {
		return err
	}
	go a.watchLag(ctx, a.Cfg.GroupPrefix+FanoutGroup) // parley_consumer_lag (ops.go)
	handed, err := handoff.NewReader(a.Redis.Client(), a.handoffConfig())
	if err != nil {
		return err
	}
	// The hand-off reader keeps the route cache right (fanoutbus.RouteCache).
	routes := a.Bus.RouteCache()
	handed.WatchRoutes(routes)
	// Its batches go on a connection whose replies are read late; the
	// offsets are committed once they came (Settle).
	pub := fanoutbus.NewLatePublisher(routes, redisstore.NewLate(a.Redis.Client(), a.Log.With("role", "fanout"), "fanout"))
	defer pub.Close()
	h := fanout.New(a.Redis, pub, a.Store)
	h.Chains = a.Redis // a partition that moves keeps its Prev chains
	return kafkalog.RunLive(ctx, kafkalog.LiveConfig{
		Kafka: KafkaConfig(a.Cfg).WithClientID("parley-fanout-" + a.Cfg.NodeID),
		Group: a.Cfg.GroupPrefix + FanoutGroup, Forget: func(ps []int32) { h.Forget(ps); pub.Forget(ps) }, Handoff: handed.Read, FromLog: routes.ReadNext,
		Gather: a.Cfg.HopGather, Settle: func(ctx context.Context) error {
			// Published, then the chains saved, then the offsets committed:
			// the partition's next owner starts from both at once.
			if err := pub.Settle(ctx); err != nil {
				return err
			}
			return h.SaveChains(ctx)
		},
	}, func(ctx context.Context, batch []kafkalog.Consumed) error {
		recs := fanoutRecords(batch)
		if err := h.HandleBatch(ctx, recs); err != nil {
			metrics.RedisErrors.WithLabelValues("fanout").Inc()
			return err
		}
		metrics.FanoutEvents.Add(float64(len(recs)))
		return nil
	}, a.Log.With("role", "fanout"))
}

// runProjector applies the log to the read models in batches: history
// and search, each stage on its own connection (projections.Stages).
func (a *App) runProjector(ctx context.Context) error {
	search := a.Store.Writing(projections.PartSearch)
	search.OnSetAside = func(r projections.Record, cause error) {
		metrics.SearchSetAside.Inc()
		a.Log.Error("event not indexed for search: message_search cannot hold it", "partition", r.Partition, "offset", r.Offset,
			"event_id", r.Event.ID, "type", r.Event.Type, "conversation_id", r.Event.ConversationID, "err", cause)
	}
	history := a.Store.Writing(projections.PartHistory)
	stages := projections.NewStages(history, search)
	go a.watchLag(ctx, a.Cfg.GroupPrefix+ProjectorGroup) // parley_consumer_lag (ops.go)
	bc, err := kafkalog.NewBatchConsumer(kafkalog.BatchConfig{
		Kafka: KafkaConfig(a.Cfg).WithClientID("parley-projector-" + a.Cfg.NodeID),
		Group: a.Cfg.GroupPrefix + ProjectorGroup, Size: a.Cfg.BatchSize, Wait: a.Cfg.BatchWait,
		FetchMin: 64 << 10, FetchWait: a.Cfg.ProjectorFetchWait,
		Resume: stages.ResumeOffsets,
		Observe: func(size int, took time.Duration) {
			metrics.ProjectorBatchSize.Observe(float64(size))
			metrics.ProjectorBatchLatency.Observe(took.Seconds())
			metrics.ProjectorEvents.Add(float64(size))
		},
	}, ProjectBatch(stages), a.Log.With("role", "projector"))
	if err != nil {
		return err
	}
	// A batch found off the stored offsets in the background rewinds the
	// consumer at once, as ProjectBatch does for one found at Apply.
	for _, st := range []*projections.Store{history, search} {
		st.OnGap = func(err error) {
			metrics.ProjectorRewinds.Inc()
			a.Log.Error("batch does not continue the stored offsets; seeking again", "group", a.Cfg.GroupPrefix+ProjectorGroup, "err", err)
			bc.Rewind()
		}
	}
	go a.Store.ListenHurry(ctx, a.Log.With("role", "projector"), func() {
		metrics.ProjectorHurries.Inc()
		bc.Hurry()
	})
	err = bc.Run(ctx)
	// A shutdown hands the partitions over with the batches in Postgres
	// committed, 5 s at most; a failure is the stored offsets' to tell.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = stages.Flush(fctx)
	return err
}

// ProjectBatch decodes consumed records and applies them to store (a
// Store, a Pipeline or the projector's Stages). A batch that skips offsets
// the store has not applied is refused and re-read.
func ProjectBatch(store interface {
	Apply(context.Context, []projections.Record) error
}) kafkalog.BatchHandler {
	return func(ctx context.Context, batch []kafkalog.Consumed) error {
		err := store.Apply(ctx, DecodeRecords(batch))
		if errors.Is(err, projections.ErrOffsetGap) {
			metrics.ProjectorRewinds.Inc()
			return fmt.Errorf("%w: %w", kafkalog.ErrRewind, err)
		}
		return err
	}
}

// DecodeRecords turns consumed records into projection records.
func DecodeRecords(batch []kafkalog.Consumed) []projections.Record {
	recs := make([]projections.Record, len(batch))
	for i, c := range batch {
		e, err := domain.DecodeEvent(c.Value)
		recs[i] = projections.Record{Partition: c.Partition, Offset: c.Offset, Hole: c.Hole, Event: e, Invalid: err != nil}
	}
	return recs
}

// fanoutRecords are the fan-out's view of a consumed batch; Received goes
// along, so a record handed off live is judged by when it came.
func fanoutRecords(batch []kafkalog.Consumed) []fanout.Record {
	recs := make([]fanout.Record, len(batch))
	for i, c := range batch {
		recs[i] = fanout.Record{Partition: c.Partition, Offset: c.Offset, Value: c.Value, Received: c.Received}
	}
	return recs
}
