package kafkalog

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/parley-chat/parley/infra/metrics"
)

// merged is the state of a live consumer fed by the hand-off and the log.
// One goroutine (apply) owns the sequencer and calls the handler; the log
// reader, the hand-off reader and the group's callbacks talk to it over
// channels.
type merged struct {
	cfg     LiveConfig
	handle  BatchHandler
	log     *slog.Logger
	seq     *sequencer
	owned   atomic.Pointer[[]int32] // for the hand-off reader
	fromLog chan logFetch
	handed  chan []Consumed
	control chan groupChange
	done    chan struct{} // apply has returned
	adm     *kadm.Client
	// reread ends the hand-off reader's read, so that it reads the
	// partitions owned now; set by the reader around each read.
	reread atomic.Pointer[context.CancelFunc]
	owns   chan struct{} // the owned set changed (capacity 1)
	// handled is, per partition, the offset after the last record the
	// handler took: what a commit stores (apply's alone).
	handled map[int32]kgo.EpochOffset
	dirty   bool
	// logReleased: the records being handled include some the log
	// brought first (LiveConfig.FromLog).
	logReleased bool
}

type logFetch struct {
	recs []*kgo.Record
	took chan struct{}
}

type groupChange struct {
	assigned bool
	// lost: the group took the partitions away without a revoke (this
	// member was fenced: its session expired). Another member may own them
	// already, so nothing of theirs is settled or committed.
	lost       bool
	partitions []int32
	applied    chan struct{}
}

// runMerged consumes the records handed off and the log together: the
// handler gets each partition's records once, in offset order, from
// whichever source brought them first (sequencer). Offsets are committed
// up to what the handler took.
func runMerged(ctx context.Context, cfg LiveConfig, handle BatchHandler, log *slog.Logger) error {
	m := &merged{cfg: cfg, handle: handle, log: log, seq: newSequencer(maxPendingHandoff),
		fromLog: make(chan logFetch), handed: make(chan []Consumed, 1), control: make(chan groupChange),
		done: make(chan struct{}), owns: make(chan struct{}, 1), handled: map[int32]kgo.EpochOffset{}}
	m.owned.Store(&[]int32{})
	cl, err := newGroupClient(cfg, groupCallbacks{
		assigned: func(ps []int32) { m.change(groupChange{assigned: true, partitions: ps}) },
		revoked:  func(ps []int32) { m.change(groupChange{partitions: ps}) },
		lost:     func(ps []int32) { m.change(groupChange{lost: true, partitions: ps}) },
		// franz-go's marks apply only to partitions its reader has polled,
		// and the hand-off runs ahead of that reader: this consumer commits
		// what it handled itself (commitHandled).
		ownCommits: true,
	}, log, kgo.FetchMaxWait(HandoffLogWait), kgo.FetchMinBytes(handoffLogMinBytes))
	if err != nil {
		return err
	}
	defer cl.Close()
	m.adm = kadm.NewClient(cl)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.readLog(ctx, cl)
	go m.readHandoff(ctx)
	m.apply(ctx, cl)
	return ctx.Err()
}

// change tells apply of partitions the group assigned or took away and
// waits until it has applied the change (it finishes its batch first).
func (m *merged) change(c groupChange) {
	c.applied = make(chan struct{})
	select {
	case m.control <- c:
		<-c.applied
	case <-m.done: // stopping: nothing more is handled
	}
}

// readLog polls the log and hands each fetch to apply; the group may
// rebalance only once apply has taken it.
func (m *merged) readLog(ctx context.Context, cl *kgo.Client) {
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, m.cfg.MaxBatch)
		if fs.IsClientClosed() {
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				m.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		if recs := fs.Records(); len(recs) > 0 {
			f := logFetch{recs: recs, took: make(chan struct{})}
			select {
			case m.fromLog <- f:
				<-f.took
			case <-ctx.Done():
			}
		}
		cl.AllowRebalance()
	}
}

// readHandoff reads the hand-off of the partitions apply owns; a change
// of them ends the read in progress.
func (m *merged) readHandoff(ctx context.Context) {
	for ctx.Err() == nil {
		ps := *m.owned.Load()
		if len(ps) == 0 {
			select {
			case <-m.owns:
			case <-ctx.Done():
			}
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		m.reread.Store(&cancel)
		recs, err := m.cfg.Handoff(rctx, ps)
		reread := rctx.Err() != nil
		cancel()
		if err != nil {
			if ctx.Err() == nil && !reread {
				m.log.Warn("hand-off read failed; the log fills in", "err", err)
				sleep(ctx, 500*time.Millisecond)
			}
			continue
		}
		if len(recs) > 0 {
			select {
			case m.handed <- recs:
			case <-ctx.Done():
			}
			sleep(ctx, m.cfg.Gather)
		}
	}
}

// apply releases records in order and hands them to the handler, one
// batch at a time, gathering whatever arrived meanwhile.
func (m *merged) apply(ctx context.Context, cl *kgo.Client) {
	defer close(m.done)
	defer m.commitHandled(cl, nil) // what was handled before the stop
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var ready []Consumed
	for {
		ready = ready[:0]
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if m.settle(ctx) && m.dirty {
				cl.CommitOffsets(ctx, map[string]map[int32]kgo.EpochOffset{m.cfg.Kafka.Topic: maps.Clone(m.handled)}, m.logCommit)
				m.dirty = false
			}
			continue
		case c := <-m.control:
			m.applyChange(cl, c)
			continue
		case f := <-m.fromLog:
			ready = m.takeLog(f, ready)
		case hs := <-m.handed:
			ready = m.takeHandoff(hs, ready)
		}
	gather:
		for {
			select {
			case f := <-m.fromLog:
				ready = m.takeLog(f, ready)
			case hs := <-m.handed:
				ready = m.takeHandoff(hs, ready)
			default:
				break gather
			}
		}
		// At most MaxBatch at a time: a gap filled after a long wait
		// releases everything held behind it at once.
		for len(ready) > 0 {
			n := min(len(ready), m.cfg.MaxBatch)
			if m.logReleased && m.cfg.FromLog != nil {
				m.cfg.FromLog()
			}
			if !handleUntilDone(ctx, ready[:n], m.handle, m.log) {
				return
			}
			m.mark(ready[:n])
			ready = ready[n:]
		}
		m.logReleased = false
	}
}

func (m *merged) applyChange(cl *kgo.Client, c groupChange) {
	if c.assigned {
		m.seq.assign(c.partitions)
		for p, off := range m.startOffsets(c.partitions) {
			m.seq.start(p, off)
		}
	} else {
		if c.lost {
			// A commit would be refused, and what Settle saves with it
			// (the fan-out's chains) could overwrite the new owner's.
			m.dropHandled(c.partitions)
		} else {
			m.commitHandled(cl, c.partitions) // before the partitions move on
		}
		m.seq.revoke(c.partitions)
	}
	owned := m.seq.owned()
	m.owned.Store(&owned)
	select {
	case m.owns <- struct{}{}:
	default:
	}
	if cancel := m.reread.Load(); cancel != nil {
		(*cancel)()
	}
	if m.cfg.Forget != nil {
		m.cfg.Forget(c.partitions)
	}
	close(c.applied)
}

func (m *merged) takeLog(f logFetch, out []Consumed) []Consumed {
	n := len(out)
	for _, r := range f.recs {
		out = m.seq.fromLog(Consumed{Partition: r.Partition, Offset: r.Offset, Value: r.Value}, r.LeaderEpoch, out)
	}
	close(f.took)
	// fromLog releases the log's record first, then pending hand-offs.
	metrics.FanoutRecords.WithLabelValues("log").Add(float64(len(out) - n))
	m.logReleased = m.logReleased || len(out) > n
	return out
}

func (m *merged) takeHandoff(hs []Consumed, out []Consumed) []Consumed {
	n := len(out)
	for _, r := range hs {
		out = m.seq.fromHandoff(r, out)
	}
	metrics.FanoutRecords.WithLabelValues("handoff").Add(float64(len(out) - n))
	return out
}

// startOffsets are where the group's consumer will start the partitions:
// the committed offset if the log still holds it, else the log's start
// (kgo.ConsumeResetOffset). Knowing it, the sequencer releases hand-off
// records at once instead of after the first fetch (up to HandoffLogWait,
// a burst of pushes). A partition missing here waits for the log's word.
func (m *merged) startOffsets(ps []int32) map[int32]int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	topic := m.cfg.Kafka.Topic
	committed, err := m.adm.FetchOffsetsForTopics(ctx, m.cfg.Group, topic)
	if err != nil {
		m.log.Warn("committed offsets unknown; live delivery waits for the log", "err", err)
		return nil
	}
	starts, err := m.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		m.log.Warn("log start offsets unknown; live delivery waits for the log", "err", err)
		return nil
	}
	ends, err := m.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		m.log.Warn("log end offsets unknown; live delivery waits for the log", "err", err)
		return nil
	}
	out := make(map[int32]int64, len(ps))
	for _, p := range ps {
		start, ok1 := starts.Lookup(topic, p)
		end, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 || start.Err != nil || end.Err != nil {
			continue
		}
		at := start.Offset
		if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= start.Offset && c.At <= end.Offset {
			at = c.At
		}
		out[p] = at
	}
	return out
}

// mark records, for the next commit, each partition's offset after the
// last of its records the handler took.
func (m *merged) mark(handled []Consumed) {
	for _, r := range handled {
		m.handled[r.Partition] = kgo.EpochOffset{Epoch: m.seq.epochOf(r.Partition), Offset: r.Offset + 1}
	}
	m.dirty = true
}

// dropHandled forgets the handled offsets of partitions, uncommitted.
func (m *merged) dropHandled(partitions []int32) {
	for _, p := range partitions {
		delete(m.handled, p)
	}
}

// commitHandled commits the handled offsets of partitions (all if nil) and
// waits for the answer (at most 5 s), then forgets them.
func (m *merged) commitHandled(cl *kgo.Client, partitions []int32) {
	offs := map[int32]kgo.EpochOffset{}
	for p, o := range m.handled {
		if partitions == nil || slices.Contains(partitions, p) {
			offs[p] = o
			delete(m.handled, p)
		}
	}
	if len(offs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !m.settle(ctx) {
		return // the next owner redelivers from the last commit
	}
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{m.cfg.Kafka.Topic: offs}, m.logCommit)
}

// settleTimeout bounds a Settle: the records wait meanwhile.
const settleTimeout = 5 * time.Second

// settle lets the handler finish what it took (LiveConfig.Settle); false
// if it could not, and the offsets must not be committed.
func (m *merged) settle(ctx context.Context) bool {
	if m.cfg.Settle == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := m.cfg.Settle(ctx); err != nil {
		m.log.Warn("offsets not committed: the handler has not finished what it took", "err", err)
		return false
	}
	return true
}

func (m *merged) logCommit(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err == nil && resp != nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					err = kerr.ErrorForCode(p.ErrorCode)
				}
			}
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		m.log.Warn("offset commit failed; a restart redelivers from the last commit (gateways drop what they had)", "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
