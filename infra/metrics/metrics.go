// Package metrics declares Parley's Prometheus metrics. Labels are bounded:
// never a user or conversation id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

var (
	Connections = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "parley_connections", Help: "Open client connections by protocol.",
	}, []string{"protocol"})
	Commands = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_commands_total", Help: "Commands handled by type and result code.",
	}, []string{"type", "code"})
	CommandLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "parley_command_duration_seconds", Help: "Time from a command's receipt to its reply (send-to-ack for message.send).",
		Buckets: latencyBuckets,
	}, []string{"type"})
	ProduceLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "parley_kafka_produce_duration_seconds", Help: "Kafka produce latency with acks=all.", Buckets: latencyBuckets,
	})
	ProduceBatch = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "parley_produce_batch_records", Help: "Records per produce request of the command path.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	})
	ProduceErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_kafka_produce_errors_total", Help: "Failed Kafka produces.",
	})
	DeliveryLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "parley_delivery_latency_seconds", Help: "Event time to push onto a client's send queue.", Buckets: latencyBuckets,
	})
	Pushes = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_pushes_total", Help: "Pushes queued to client connections.",
	})
	FanoutEvents = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_fanout_events_total", Help: "Events fanned out to the gateway nodes.",
	})
	FanoutRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_fanout_records_total", Help: "Records the fan-out released in log order, by the source that brought them first: handoff (from the producer, through Redis) or log (read from Kafka).",
	}, []string{"source"})
	FanoutRoutes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_fanout_route_lookups_total", Help: "Recipients whose gateway nodes the fan-out looked up, by where it found them: cached (its memory) or read (Redis).",
	}, []string{"source"})
	FanoutRepublished = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_fanout_republished_total", Help: "Deliveries the fan-out published again through the pool because the connection they were written on broke before Redis answered, or Redis refused one (the gateways drop the copies they had).",
	})
	FanoutRouteResets = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_fanout_route_cache_resets_total", Help: "Times the fan-out emptied its route cache (a new or restored hand-off subscription, records the log or a stream brought, a stalled reader).",
	})
	Handoff = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_handoff_records_total", Help: "Acked records handed off to the fan-out by result: written, dropped (queue full), failed (Redis), unreadable (at the reader). The fan-out reads any not written from the log.",
	}, []string{"result"})
	HandoffResubscribes = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_handoff_resubscribes_total", Help: "Times the fan-out's hand-off subscription broke and came back; each time it reads its partitions' hand-off streams whole.",
	})
	WriteBehindDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_redis_write_behind_dropped_total", Help: "Background Redis writes dropped because their queue was full (hand-off records, final idempotency records: each has a slower way to the same end).",
	})
	RedisErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_redis_errors_total", Help: "Redis errors by operation.",
	}, []string{"op"})
	ProjectorBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "parley_projector_batch_size", Help: "Events per projector transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	ProjectorBatchLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "parley_projector_batch_duration_seconds", Help: "Time to apply one projector batch.", Buckets: latencyBuckets,
	})
	ProjectorSetAside = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_projector_set_aside_total", Help: "Events the projector could not apply and set aside in dead_letters (docs/reliability.md).",
	})
	ProjectorGuardedRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_projector_guarded_retries_total",
		Help: "Batches applied a second time with every insert guarded: a row they did not expect was there (a duplicate produce the projector did not remember, after a restart or rebalance; offsets lost).",
	})
	ProjectorRewinds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_projector_rewinds_total", Help: "Batches refused for skipping unapplied offsets, re-read from the stored offsets.",
	})
	ProjectorHurries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_projector_hurries_total", Help: "Requests of readers waiting for the read model to flush the projector's batch at once.",
	})
	ProjectorEvents = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_projector_events_total", Help: "Events applied by the projector (events/s is its rate).",
	})
	SearchSetAside = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_search_set_aside_total", Help: "Events the projector's search stage could not write to message_search and skipped (history keeps them; they are not found by search).",
	})
	ConsumerLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "parley_consumer_lag", Help: "Events between the log's end and a consumer group's position, per partition.",
	}, []string{"group", "partition"})
	ReplayProgress = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "parley_replay_progress_ratio", Help: "Fraction of the log a running replay has applied.",
	})
	SendQueueOverflows = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_send_queue_overflows_total", Help: "Connections closed because their send queue overflowed.",
	})
	DeliveriesReceived = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_deliveries_received_total", Help: "Deliveries this gateway read from its stream.",
	})
	DeliveriesDelivered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_deliveries_delivered_total", Help: "Deliveries this gateway read that reached at least one local connection (with received: how well routing spares a node work for others).",
	})
	PresenceAnnounced = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_presence_announced_total", Help: "Presence changes this gateway announced to contacts, by status.",
	}, []string{"status"})
	PresenceDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_presence_dropped_total", Help: "Presence announcements dropped (queue full, or the read model or Redis unavailable).",
	})
	DeliveryGaps = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_delivery_gaps_total", Help: "Times this gateway found it had missed deliveries and asked its clients to resync.",
	})
	RateLimited = promauto.NewCounter(prometheus.CounterOpts{
		Name: "parley_rate_limited_total", Help: "Commands refused by a rate limit: a user's on a node (WebSocket and Socket.IO), or the HTTP API's.",
	})
	ConnectionsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_connections_refused_total", Help: "Connections refused, by reason.",
	}, []string{"reason"})
	RedisDials = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_redis_dials_total", Help: "Redis connections dialed, by result; after warm-up a rise means reconnects.",
	}, []string{"result"})
	Ready = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "parley_ready", Help: "1 when every dependency this node's roles need answered the last readiness check, else 0.",
	})
	DependencyUp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "parley_dependency_up", Help: "1 when the dependency answered the last readiness check, else 0.",
	}, []string{"dependency"})
)
