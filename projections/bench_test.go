package projections_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// benchEvents reads a size from the environment (for the 1M-event runs in
// docs/benchmarks.md) or uses def.
func benchEvents(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkProjector pushes a realistic log (70 % sends, edits, deletes,
// reads, joins, leaves, creations) through Store.Apply in the projector's
// batch sizes, and, in the same run, through the baseline the design warns
// about: one transaction per event. Each iteration applies the whole log to
// a fresh schema; events/s and events/tx are reported.
//
// The batched runs write what the live projector writes (PartHistory);
// search-1000 is the search stage alone (PartSearch), and stages-1000
// both, pipelined on two backends, as the live projector runs them: the
// rate at which the read models and the search index together keep up.
//
//	go test -run '^$' -bench BenchmarkProjector -benchtime 1x ./projections/
//	PARLEY_BENCH_EVENTS=200000 go test -run '^$' -bench BenchmarkProjector -benchtime 1x ./projections/
func BenchmarkProjector(b *testing.B) {
	pool := openPool(b)
	n := benchEvents("PARLEY_BENCH_EVENTS", 100_000)
	recs := newWorkload(42, 8).generate(n)
	// Batches of 5: the live projector at about 1,000 events/s (flushed 5
	// ms after the first record), on the first 20,000 events.
	for _, size := range []int{5, 100, 1000, 5000} {
		b.Run("batched-"+strconv.Itoa(size), func(b *testing.B) {
			log := recs
			if size < 100 {
				log = recs[:min(len(recs), 20_000)]
			}
			for b.Loop() {
				b.StopTimer()
				st := projections.NewStore(pool, freshSchema(b, pool), testTopic).Writing(projections.PartHistory)
				b.StartTimer()
				start, cpu := time.Now(), machineCPU()
				applyAll(b, st, log, size)
				report(b, len(log), time.Since(start), float64(size), cpu)
			}
		})
	}
	// The live projector's way (infra/app): a Pipeline builds the next
	// batch while Postgres applies this one.
	b.Run("pipelined-1000", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			p := projections.NewStore(pool, freshSchema(b, pool), testTopic).Writing(projections.PartHistory).Pipeline()
			b.StartTimer()
			start, cpu := time.Now(), machineCPU()
			applyAll(b, p, recs, 1000)
			if err := p.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			report(b, len(recs), time.Since(start), 1000, cpu)
		}
	})
	b.Run("search-1000", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			st := projections.NewStore(pool, freshSchema(b, pool), testTopic).Writing(projections.PartSearch)
			b.StartTimer()
			start, cpu := time.Now(), machineCPU()
			applyAll(b, st, recs, 1000)
			report(b, len(recs), time.Since(start), 1000, cpu)
		}
	})
	// The live projector whole: its two stages, each pipelined on its own
	// connection (projections.Stages, infra/app.runProjector).
	b.Run("stages-1000", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			base := projections.NewStore(pool, freshSchema(b, pool), testTopic)
			st := projections.NewStages(base.Writing(projections.PartHistory), base.Writing(projections.PartSearch))
			b.StartTimer()
			start, cpu := time.Now(), machineCPU()
			applyAll(b, st, recs, 1000)
			if err := st.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			report(b, len(recs), time.Since(start), 1000, cpu)
		}
	})
	// Two appliers on disjoint partitions, as two projector instances (or
	// the replay's two appliers) run: a conversation's rows live in one
	// partition, so they never touch the same rows.
	b.Run("batched-5000-2-appliers", func(b *testing.B) {
		var halves [2][]projections.Record
		for _, r := range recs {
			halves[r.Partition%2] = append(halves[r.Partition%2], r)
		}
		for b.Loop() {
			b.StopTimer()
			st := projections.NewStore(pool, freshSchema(b, pool), testTopic).Writing(projections.PartHistory)
			b.StartTimer()
			start, cpu := time.Now(), machineCPU()
			var wg sync.WaitGroup
			for _, h := range halves {
				wg.Go(func() { applyBeside(b, st, h, 5000) })
			}
			wg.Wait()
			report(b, len(recs), time.Since(start), 5000, cpu)
		}
	})
	// The baseline is slow (a commit per event): a slice of the log is
	// enough to measure its rate.
	base := recs[:min(len(recs), benchEvents("PARLEY_BENCH_BASELINE_EVENTS", 3000))]
	b.Run("baseline-tx-per-event", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			schema := freshSchema(b, pool)
			b.StartTimer()
			start, cpu := time.Now(), machineCPU()
			for _, r := range base {
				if err := insertOne(context.Background(), pool, schema, r); err != nil {
					b.Fatal(err)
				}
			}
			report(b, len(base), time.Since(start), 1, cpu)
		}
	})
}

// applyBeside is applyAll for a goroutine other than the benchmark's: it
// reports a failure with Error, not Fatal.
func applyBeside(b *testing.B, st *projections.Store, recs []projections.Record, size int) {
	for i := 0; i < len(recs); i += size {
		if err := st.Apply(context.Background(), recs[i:min(i+size, len(recs))]); err != nil {
			b.Error(err)
			return
		}
	}
}

// report gives events/s, events per transaction and the CPU the whole
// machine spent per event since cpuBefore (machineCPU): on an otherwise
// idle machine, the projector's and Postgres's CPU per event.
func report(b *testing.B, events int, took time.Duration, perTx float64, cpuBefore time.Duration) {
	b.ReportMetric(float64(events)/took.Seconds(), "events/s")
	b.ReportMetric(perTx, "events/tx")
	if cpu := machineCPU() - cpuBefore; cpuBefore > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(events), "cpu-µs/event")
	}
}

// machineCPU is the CPU time all processes have spent (user, system,
// interrupts), from /proc/stat; 0 where it cannot be read.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// insertOne is the naive projector: each event in its own transaction, one
// INSERT of the row it produces (the message for a send, else the event).
func insertOne(ctx context.Context, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, schema string, r projections.Record) error {
	if r.Invalid {
		return nil
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	e := r.Event
	var p domain.MessageSent
	if e.Type == domain.EvMessageSent && e.Payload(&p) == nil {
		// The message row holds its event (migration 0010).
		_, err = tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "messages"}.Sanitize()+`
			(conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq, event_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $2, $8) ON CONFLICT DO NOTHING`,
			e.ConversationID, r.Seq(), p.MessageID, e.Actor, p.ClientMsgID, p.Body, e.At, e.ID)
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "event_log"}.Sanitize()+`
			(conversation_id, seq, event_id, type, actor, at, data) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT DO NOTHING`, e.ConversationID, r.Seq(), e.ID, e.Type, e.Actor, e.At, string(e.Data))
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// BenchmarkReplay times a full replay (projections.Replayer, as `chatctl
// replay` runs it) of a realistic log from Kafka into a fresh schema,
// including the final switch. Producing the log is not timed.
//
//	PARLEY_REPLAY_EVENTS=1000000 go test -run '^$' -bench BenchmarkReplay -benchtime 1x -timeout 30m ./projections/
//
// PARLEY_BENCH_KEEP_TOPIC=1 keeps the topic (its name is logged) so that
// `CHAT_KAFKA_TOPIC=... chatctl replay` can be timed on the same log.
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	pool := openPool(b)
	n := benchEvents("PARLEY_REPLAY_EVENTS", 200_000)
	if err := pgstore.MigrateControl(ctx, dsn()); err != nil {
		b.Fatal(err)
	}
	kcfg := kafkalog.Config{Brokers: brokers(), Topic: "bench.replay." + testenv.RandHex(4), Partitions: 8, ReplicationFactor: 1, MinInsyncReplicas: 1}
	if kept := os.Getenv("PARLEY_REPLAY_TOPIC"); kept != "" {
		// A topic an earlier run kept (PARLEY_BENCH_KEEP_TOPIC): replay it
		// as it is, without producing it again.
		kcfg.Topic = kept
		n = keptEvents(b, kcfg)
	} else {
		if _, err := kafkalog.EnsureTopic(kcfg); err != nil {
			b.Fatalf("kafka is needed (go tool task services:up): %v", err)
		}
		if os.Getenv("PARLEY_BENCH_KEEP_TOPIC") == "" {
			b.Cleanup(func() { deleteTopic(kcfg) })
		}
		produceLog(b, kcfg, newWorkload(7, kcfg.Partitions).generate(n))
	}
	b.Logf("topic %s holds %d events", kcfg.Topic, n)
	for b.Loop() {
		name := "t_" + testenv.RandHex(5)
		b.Cleanup(func() { dropReplay(pool, name) })
		src, err := kafkalog.NewPartitionReader(kcfg.Brokers, kcfg.Topic, "parley-bench")
		if err != nil {
			b.Fatal(err)
		}
		r := &projections.Replayer{Pool: pool, Topic: kcfg.Topic, Name: name, Source: kafkaSource{src},
			Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
		res, err := r.Run(ctx, projections.ReplayOptions{})
		src.Close()
		if err != nil {
			b.Fatal(err)
		}
		if !res.Switched || res.Events != int64(n) {
			b.Fatalf("replay %+v", res)
		}
		b.ReportMetric(float64(res.Events)/res.Took.Seconds(), "events/s")
		b.ReportMetric(res.Took.Seconds(), "s/replay")
	}
}

// keptEvents is the number of records in a kept topic.
func keptEvents(b *testing.B, kcfg kafkalog.Config) int {
	src, err := kafkalog.NewPartitionReader(kcfg.Brokers, kcfg.Topic, "parley-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	hwm, err := src.HighWaterMarks(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, end := range hwm {
		n += int(end)
	}
	return n
}

func brokers() []string {
	if v := os.Getenv("CHAT_KAFKA_BROKERS"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"localhost:9092"}
}

// produceLog writes recs to their partitions (keyed by conversation, as the
// command path does), fast: an async producer, acks from the leader.
func produceLog(b *testing.B, kcfg kafkalog.Config, recs []projections.Record) {
	sc := kafkalog.SaramaConfig("parley-bench")
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	sc.Producer.Return.Errors = true
	sc.Producer.Flush.Messages = 5000
	sc.Producer.Flush.Frequency = 20 * time.Millisecond
	p, err := sarama.NewAsyncProducer(kcfg.Brokers, sc)
	if err != nil {
		b.Fatal(err)
	}
	var produceErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for err := range p.Errors() {
			produceErr = err
		}
	}()
	for _, r := range recs {
		var v []byte
		if r.Invalid {
			v = []byte("not json")
		} else if v, err = json.Marshal(r.Event); err != nil {
			b.Fatal(err)
		}
		p.Input() <- &sarama.ProducerMessage{Topic: kcfg.Topic, Partition: r.Partition,
			Key: sarama.StringEncoder(r.Event.ConversationID), Value: sarama.ByteEncoder(v)}
	}
	p.AsyncClose()
	<-done
	if produceErr != nil {
		b.Fatal(produceErr)
	}
}

func deleteTopic(kcfg kafkalog.Config) {
	admin, err := sarama.NewClusterAdmin(kcfg.Brokers, kafkalog.SaramaConfig("parley-bench"))
	if err == nil {
		_ = admin.DeleteTopic(kcfg.Topic)
		admin.Close()
	}
}

// dropReplay removes what a replay of deployment name built.
func dropReplay(pool *pgxpool.Pool, name string) {
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 || '\_%'`, name)
	if err == nil {
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		dropSchemas(pool, names...)
	}
	_, _ = pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, name)
}

// kafkaSource is the replay's log source, as chatctl builds it.
type kafkaSource struct{ r *kafkalog.PartitionReader }

func (k kafkaSource) HighWaterMarks(ctx context.Context) (map[int32]int64, error) {
	return k.r.HighWaterMarks(ctx)
}

func (k kafkaSource) Read(ctx context.Context, from, to map[int32]int64, size int, handle func([]projections.Record) error) error {
	return k.r.ReadRange(ctx, from, to, size, func(b []kafkalog.Consumed) error { return handle(app.DecodeRecords(b)) })
}
