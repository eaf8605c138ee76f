package fanoutbus

import (
	"context"
	"slices"
	"sync"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
)

// LatePublisher is the fan-out's publisher: a RouteCache whose batches go
// on a connection whose replies are read late (redisstore.Late), so that
// no reply wakes the fan-out. A batch is settled when its replies came
// and none was a refusal; until then it is held. A batch whose connection
// broke before its replies came, or one a reply refused, is published
// again through the pipeline with every batch held after it, in order
// (the gateways drop the deliveries they had by seq). The fan-out's
// consumer commits a batch's offsets only after Settle: a fan-out that
// dies leaves every unsettled batch to the next one, as the log redelivers
// it. So reading replies late loses nothing the pipeline would not: a
// refusal or a broken connection still ends in the batch published again,
// or in Settle and the next publish failing (the consumer retries) until
// Redis takes it.
//
// Where the client allows no late connection (TLS, a Cluster), every
// batch goes through the pipeline, as Bus.PublishBatch.
type LatePublisher struct {
	*RouteCache
	late *redisstore.Late

	mu        sync.Mutex
	unsettled []sentBatch
	redo      bool // a held batch was lost or refused: publish them all again
	out       []byte
}

// sentBatch is a batch written on the late connection, kept until its
// replies came.
type sentBatch struct {
	mark redisstore.Mark
	ps   []published
}

// maxHeldReplies bounds the replies owed for the batches held (well below
// what a late connection may owe): past it a publish first waits for them
// (at most the late connection's timeout), and a batch that alone would
// pass it (a catch-up's burst) goes through the pool.
const maxHeldReplies = 1 << 14

// NewLatePublisher publishes through late (nil: through the pipeline) and
// looks routes up in c. Close closes late.
func NewLatePublisher(c *RouteCache, late *redisstore.Late) *LatePublisher {
	return &LatePublisher{RouteCache: c, late: late}
}

// PublishBatch writes ds on the late connection and holds them until
// Settle or a later publish finds their replies; an error if a batch held
// before had to be published again and could not be.
func (p *LatePublisher) PublishBatch(ctx context.Context, ds []domain.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.encode(ds, nil)
	if p.late.Owed()+2*len(ps) > maxHeldReplies {
		p.late.Await()
	}
	if err := p.settleLocked(ctx); err != nil {
		return err
	}
	if p.late != nil && 2*len(ps) <= maxHeldReplies {
		b, n := p.resp(ps)
		if m, ok := p.late.WriteMarked(b, n); ok {
			p.unsettled = append(p.unsettled, sentBatch{m, ps})
			return nil
		}
		p.redo = len(p.unsettled) > 0 // the connection broke: what it held may be lost
	}
	return p.republishLocked(ctx, ps)
}

// Settle waits (at most the late connection's timeout) for the replies of
// the batches held, publishes again what was lost or refused, and returns
// nil once every batch published so far reached Redis. The consumer calls
// it before each commit of its offsets.
func (p *LatePublisher) Settle(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.unsettled) > 0 {
		p.late.Await()
	}
	p.late.Drain() // logs the refusals counted, finds a closed connection
	return p.settleLocked(ctx)
}

// Forget drops the deliveries held of partitions (all if nil): the
// consumer left their offsets uncommitted (Settle failed) and their next
// owner publishes them again from the log, chained afresh.
func (p *LatePublisher) Forget(partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.unsettled[:0]
	for _, s := range p.unsettled {
		ps := s.ps[:0:0]
		for _, x := range s.ps {
			if partitions != nil && !slices.Contains(partitions, x.partition) {
				ps = append(ps, x)
			}
		}
		if len(ps) == len(s.ps) {
			kept = append(kept, s)
			continue
		}
		// The batch's replies are still owed: it stays held, with less to
		// publish again.
		kept = append(kept, sentBatch{s.mark, ps})
	}
	clear(p.unsettled[len(kept):])
	p.unsettled = kept
}

// Close closes the late connection (after its replies, at most its
// timeout); the caller settled what it commits before.
func (p *LatePublisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.late.Close()
}

// settleLocked drops the batches whose replies came, and publishes the
// rest again if one of them was lost or refused.
func (p *LatePublisher) settleLocked(ctx context.Context) error {
	gen, read, refusedAt := p.late.Progress()
	done := 0
	for _, s := range p.unsettled {
		if p.redo {
			break // every batch held goes again, the settled ones too
		}
		switch {
		case s.mark.Gen != gen:
			p.redo = true // written on a connection that broke
		case refusedAt != 0 && refusedAt <= s.mark.End:
			// This batch, or one after it, was refused: every batch held
			// goes again through the pool, and the connection is dropped,
			// so that the replies still owed for them (refusals too) are
			// not read against later batches.
			p.redo = true
			p.late.Drop()
		case s.mark.End <= read:
			done++
			continue
		}
		break // lost, refused, or in flight
	}
	clear(p.unsettled[:done])
	p.unsettled = p.unsettled[done:]
	if len(p.unsettled) == 0 {
		p.unsettled, p.redo = nil, false
		return nil
	}
	if !p.redo {
		return nil
	}
	return p.republishLocked(ctx, nil)
}

// republishLocked publishes the batches held, then ps, in one pipeline;
// on success nothing is held any more.
func (p *LatePublisher) republishLocked(ctx context.Context, ps []published) error {
	all := ps
	if len(p.unsettled) > 0 {
		all = nil
		for _, s := range p.unsettled {
			all = append(all, s.ps...)
		}
		all = append(all, ps...)
		metrics.FanoutRepublished.Add(float64(len(all) - len(ps)))
		p.log.Warn("fan-out: deliveries published again through the pool (their connection broke, or Redis refused one)",
			"deliveries", len(all)-len(ps))
	}
	if len(all) > 0 {
		if err := p.publish(ctx, all); err != nil {
			return err
		}
	}
	clear(p.unsettled)
	p.unsettled, p.redo = nil, false
	return nil
}

// resp writes ps as the pipeline would: an XADD and an SPUBLISH each.
func (p *LatePublisher) resp(ps []published) ([]byte, int) {
	out := p.out[:0]
	for _, x := range ps {
		out = redisstore.AppendCommand(out, redisstore.Cmd{"xadd", x.names.stream, "maxlen", "~", p.cfg.MaxLen, "*", "d", x.payload})
		out = redisstore.AppendCommand(out, redisstore.Cmd{"spublish", x.names.channel, x.payload})
	}
	p.out = out
	if cap(p.out) > 1<<20 {
		p.out = nil // a burst's buffer is not kept
	}
	return out, 2 * len(ps)
}
