package fanout

import (
	"context"
	"sync"

	"github.com/parley-chat/parley/domain"
)

// Record is one logged event as a batching consumer hands it over.
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
}

// BatchPublisher publishes deliveries in one round trip, in order.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, ds []domain.Delivery) error
}

// HandleBatch fans out records that are in log order per partition, with
// two Redis round trips per run of message events instead of two per event
// (docs/benchmarks.md): the memberships of the run's conversations are read
// at once and the run's deliveries are published in one pipeline. Events
// that change membership, and conversations whose membership Redis does not
// hold completely, go through Handle one at a time (after what came before
// them is published), so recipients are computed exactly as Handle does.
func (h *Handler) HandleBatch(ctx context.Context, recs []Record) error {
	bp, ok := h.bus.(BatchPublisher)
	if !ok {
		for _, r := range recs {
			if err := h.Handle(ctx, r.Partition, r.Offset, r.Value); err != nil {
				return err
			}
		}
		return nil
	}
	for len(recs) > 0 {
		n, err := h.handleRun(ctx, bp, recs)
		if err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

type decoded struct {
	r Record
	e domain.Event
}

// handleRun handles the leading run of message events of recs (or, if recs
// starts with a membership event, that one event) and reports how many
// records it consumed.
func (h *Handler) handleRun(ctx context.Context, bp BatchPublisher, recs []Record) (int, error) {
	var run []decoded
	n := 0
	for ; n < len(recs); n++ {
		e, err := domain.DecodeEvent(recs[n].Value)
		if err != nil {
			continue // poison, as in Handle
		}
		if changesMembership(e.Type) {
			break
		}
		run = append(run, decoded{recs[n], e})
	}
	if len(run) == 0 { // recs starts with a membership event
		return 1, h.Handle(ctx, recs[0].Partition, recs[0].Offset, recs[0].Value)
	}
	ms, err := h.membershipsOf(ctx, run)
	if err != nil {
		return 0, err
	}
	var out []domain.Delivery
	prev := map[streamPartition]int64{}
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		if err := bp.PublishBatch(ctx, out); err != nil {
			return err
		}
		h.mu.Lock()
		for k, v := range prev {
			h.prev[k] = v
		}
		h.mu.Unlock()
		out, prev = out[:0], map[streamPartition]int64{}
		return nil
	}
	for _, d := range run {
		m, complete := ms[d.e.ConversationID]
		if !complete { // Handle rebuilds it from the read model
			if err := flush(); err != nil {
				return 0, err
			}
			if err := h.Handle(ctx, d.r.Partition, d.r.Offset, d.r.Value); err != nil {
				return 0, err
			}
			continue
		}
		if h.MaxAge > 0 && h.now().Sub(d.e.At) > h.MaxAge {
			continue
		}
		seq := d.r.Offset + 1
		frame, err := domain.EncodePush(d.e, seq)
		if err != nil {
			continue
		}
		key := streamPartition{h.bus.Stream(d.e.ConversationID), d.r.Partition}
		p, ok := prev[key]
		if !ok {
			h.mu.Lock()
			p = h.prev[key]
			h.mu.Unlock()
		}
		out = append(out, domain.Delivery{ConversationID: d.e.ConversationID, Seq: seq, Partition: d.r.Partition,
			Recipients: RecipientsAt(m, seq), Frame: frame, EventAtUnixMs: d.e.At.UnixMilli(), Prev: p})
		prev[key] = seq
	}
	return n, flush()
}

func changesMembership(typ string) bool {
	return typ == domain.EvConversationCreated || typ == domain.EvMemberJoined || typ == domain.EvMemberLeft
}

// membershipsOf reads the memberships of the run's conversations
// concurrently (one round trip of wall time); a conversation whose hash is
// not complete is left out.
func (h *Handler) membershipsOf(ctx context.Context, run []decoded) (map[string]map[string]domain.Membership, error) {
	var convs []string
	seen := map[string]bool{}
	for _, d := range run {
		if c := d.e.ConversationID; !seen[c] {
			seen[c] = true
			convs = append(convs, c)
		}
	}
	type result struct {
		ms       map[string]domain.Membership
		complete bool
		err      error
	}
	res := make([]result, len(convs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // a share of the Redis pool
	for i, c := range convs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ms, complete, err := h.members.Memberships(ctx, c)
			res[i] = result{ms, complete, err}
		}()
	}
	wg.Wait()
	out := make(map[string]map[string]domain.Membership, len(convs))
	for i, c := range convs {
		if res[i].err != nil {
			return nil, res[i].err
		}
		if res[i].complete {
			out[c] = res[i].ms
		}
	}
	return out, nil
}
