//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/wsclient"
)

// prober measures recovery. A probe round, through the gateways running at
// the time, three different ones when there are three:
//
//  1. probe-b connects to gateway B (live receiver);
//  2. probe-a connects to gateway A and sends one message in each probe
//     conversation (one conversation per Kafka partition, so every
//     partition's fanout and projector owner is exercised); each must be
//     acked (Kafka, Redis idempotency and membership);
//  3. probe-b must receive every one live on B (fanout, Redis Streams);
//  4. probe-b connects to gateway C and resumes with sync from just before
//     each probe message: each must be replayed (projector, Postgres, the
//     resume path).
//
// A fault's recovery time is from its injection to the end of the first
// round that passes.
type prober struct {
	c     *cluster
	convs []string // one per partition

	mu    sync.Mutex // rounds overlap
	round int
	rng   *rand.Rand
}

const (
	probeA = "probe-a"
	probeB = "probe-b"
)

func newProber(ctx context.Context, c *cluster) (*prober, error) {
	p := &prober{c: c, rng: rand.New(rand.NewPCG(42, 7))}
	conn, err := p.dial(ctx, 0, probeA)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	part := sarama.NewHashPartitioner(chaosTopic)
	byPart := map[int32]string{}
	for i := 0; i < 200 && len(byPart) < partitions; i++ {
		raw, err := request(ctx, conn, 10*time.Second, "conversation.create",
			map[string]any{"kind": "group", "title": fmt.Sprintf("probe %d", i), "members": []string{probeB}})
		if err != nil && strings.Contains(err.Error(), "rate_limited") {
			// Ids are random: covering every partition can take more creates
			// than the connection's burst; a client backs off and goes on.
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("create probe conversation: %w", err)
		}
		var r struct {
			Conversation domain.Conversation `json:"conversation"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		pt, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(r.Conversation.ConversationID)}, partitions)
		if err != nil {
			return nil, err
		}
		if _, ok := byPart[pt]; !ok {
			byPart[pt] = r.Conversation.ConversationID
		}
	}
	if len(byPart) < partitions {
		return nil, fmt.Errorf("probe conversations cover %d of %d partitions", len(byPart), partitions)
	}
	for pt := range int32(partitions) {
		p.convs = append(p.convs, byPart[pt])
	}
	return p, nil
}

func (p *prober) dial(ctx context.Context, gw int, user string) (*wsclient.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, _, err := wsclient.Dial(dctx, p.c.gateways[gw].WS(), p.c.token(user), wsclient.Options{PushBuf: 10000})
	if err != nil {
		return nil, fmt.Errorf("dial gateway-%d as %s: %w", gw+1, user, err)
	}
	return conn, nil
}

func request(ctx context.Context, conn *wsclient.Client, limit time.Duration, typ string, data any) (json.RawMessage, error) {
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return conn.Request(rctx, typ, data)
}

// seenSet collects the message ids a connection receives.
type seenSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func collect(conn *wsclient.Client) *seenSet {
	s := &seenSet{ids: map[string]bool{}}
	go func() {
		for p := range conn.Pushes {
			if p.Type != domain.PushMessageNew {
				continue
			}
			var m domain.Message
			if json.Unmarshal(p.Data, &m) == nil {
				s.mu.Lock()
				s.ids[m.MessageID] = true
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *seenSet) missing(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if !s.ids[id] {
			n++
		}
	}
	return n
}

// once runs one probe round; nil means the whole path works.
func (p *prober) once(ctx context.Context) error {
	alive := p.c.aliveGateways()
	if len(alive) < 2 {
		return fmt.Errorf("%d gateways running", len(alive))
	}
	p.mu.Lock()
	p.round++
	round := p.round
	p.rng.Shuffle(len(alive), func(i, j int) { alive[i], alive[j] = alive[j], alive[i] })
	p.mu.Unlock()
	ga, gb, gc := alive[0], alive[1], alive[2%len(alive)]
	b, err := p.dial(ctx, gb, probeB)
	if err != nil {
		return err
	}
	defer b.Close()
	live := collect(b)
	// Any first request ends the new connection's initial hold of pushes.
	_, _ = request(ctx, b, 5*time.Second, "typing", map[string]any{"conversation_id": p.convs[0]})
	a, err := p.dial(ctx, ga, probeA)
	if err != nil {
		return err
	}
	defer a.Close()
	ids := make([]string, len(p.convs))
	pos := map[string]int64{}
	for i, conv := range p.convs {
		raw, err := request(ctx, a, 5*time.Second, "message.send", map[string]any{"conversation_id": conv,
			"client_msg_id": fmt.Sprintf("probe-%d-%d", round, i), "body": "probe"})
		if err != nil {
			return fmt.Errorf("send (partition %d) via gateway-%d: %w", i, ga+1, err)
		}
		var r struct {
			Message domain.Message `json:"message"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		ids[i], pos[conv] = r.Message.MessageID, r.Message.Seq-1
	}
	if err := poll.Err(ctx, 5*time.Second, func() error {
		if n := live.missing(ids); n > 0 {
			return fmt.Errorf("%d of %d probe messages not delivered live to gateway-%d", n, len(ids), gb+1)
		}
		return nil
	}); err != nil {
		return err
	}
	r, err := p.dial(ctx, gc, probeB)
	if err != nil {
		return err
	}
	defer r.Close()
	replay := collect(r)
	if _, err := request(ctx, r, 15*time.Second, "sync", map[string]any{"positions": pos}); err != nil {
		return fmt.Errorf("sync via gateway-%d: %w", gc+1, err)
	}
	return poll.Err(ctx, 5*time.Second, func() error {
		if n := replay.missing(ids); n > 0 {
			return fmt.Errorf("%d of %d probe messages not replayed by sync on gateway-%d", n, len(ids), gc+1)
		}
		return nil
	})
}

// until runs rounds until one passes or limit passes; it returns the time
// from since to the end of the first passing round. Rounds overlap (a new
// one every 250 ms, at most three in flight), so a round stuck on a frozen
// node does not hide a recovery that a later round would see.
func (p *prober) until(ctx context.Context, since time.Time, limit time.Duration) (time.Duration, error) {
	rctx, cancel := context.WithDeadline(ctx, since.Add(limit))
	defer cancel()
	type result struct {
		at  time.Time
		err error
	}
	results := make(chan result, 8)
	running := 0
	start := func() {
		running++
		go func() {
			err := p.once(rctx)
			results <- result{time.Now(), err}
		}()
	}
	start()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case r := <-results:
			running--
			if r.err == nil {
				return r.at.Sub(since), nil
			}
			last = r.err
		case <-tick.C:
			if running < 3 {
				start()
			}
		case <-rctx.Done():
			for ; running > 0; running-- {
				<-results
			}
			return 0, errors.Join(fmt.Errorf("not recovered within %v", limit), last)
		}
	}
}
