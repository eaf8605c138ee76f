//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/internal/poll"
)

// profile is the size and pace of a run.
type profile struct {
	Name          string
	Users, Groups int
	GroupSize     int
	Warmup        time.Duration // load before the first fault
	Steady        time.Duration // load between a recovery and the next fault
	Rounds        int           // times the fault sequence runs
	PGStop        time.Duration // how long Postgres stays down
	RecoveryLimit time.Duration // a fault not recovered by then fails the run
	Drain, Settle time.Duration // after the load: pending sends, then deliveries
	KafkaSignal   syscall.Signal
	// Blips is the share of clients whose network fails for 1-3 s half a
	// second into every fault: they reconnect and resume while the part is
	// still down.
	Blips  float64
	Client clientConfig
}

var profiles = map[string]profile{
	// short: CI. About 3-4 minutes on two cores including the 30 s Postgres
	// stop.
	"short": {Name: "short", Users: 16, Groups: 6, GroupSize: 4, Warmup: 10 * time.Second, Steady: 5 * time.Second,
		Rounds: 1, PGStop: 30 * time.Second, RecoveryLimit: 120 * time.Second, Drain: 60 * time.Second, Settle: 60 * time.Second,
		KafkaSignal: syscall.SIGKILL, Blips: 0.3,
		Client: clientConfig{SendEvery: time.Second, DisconnectProb: 0.04, DropMidSend: 0.02, RequestTimeout: 20 * time.Second}},
	// long: documented figures. 2.5 times as many clients, 30 s of load
	// between faults, and the fault sequence three times, each round on
	// other instances (Kafka gets SIGTERM in the middle round, SIGKILL
	// otherwise).
	"long": {Name: "long", Users: 40, Groups: 12, GroupSize: 6, Warmup: 30 * time.Second, Steady: 30 * time.Second,
		Rounds: 3, PGStop: 30 * time.Second, RecoveryLimit: 180 * time.Second, Drain: 90 * time.Second, Settle: 90 * time.Second,
		KafkaSignal: syscall.SIGKILL, Blips: 0.3,
		Client: clientConfig{SendEvery: 1500 * time.Millisecond, DisconnectProb: 0.03, DropMidSend: 0.02, RequestTimeout: 20 * time.Second}},
}

var (
	flagProfile = flag.String("chaos.profile", envOr("CHAOS_PROFILE", "short"), "chaos profile: short or long")
	flagPGStop  = flag.Duration("chaos.pgstop", envDuration("CHAOS_PG_STOP", 0), "how long Postgres stays down (0: the profile's, 30s)")
	flagKeep    = flag.Bool("chaos.keep", os.Getenv("CHAOS_KEEP") != "", "keep the run's directory (logs, data) even when it passes")
	flagFaults  = flag.String("chaos.faults", os.Getenv("CHAOS_FAULTS"), "comma-separated fault sequence (default gateway,consumers,redis,redis-frozen,kafka,postgres)")
	flagSeed    = flag.Uint64("chaos.seed", uint64(envDuration("CHAOS_SEED", 0)), "random seed (0: from the clock)")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		var n int64
		if _, err := fmt.Sscan(v, &n); err == nil {
			return time.Duration(n)
		}
	}
	return def
}

// faultResult is the outcome of one injected fault.
type faultResult struct {
	Name     string
	At       time.Time
	Repaired time.Duration // from injection until the broken part was back (0: nothing to repair)
	Recovery time.Duration // from injection until a probe round passed
	Resumed  time.Duration // from injection until every client it disconnected had synced again
	Dropped  int           // clients whose connection the fault dropped
	Blipped  int           // clients whose network the harness cut during the fault
	SendErrs int           // failed send attempts between injection and recovery
	Acks     int           // messages acked between injection and recovery
	Err      error
}

type run struct {
	t       *testing.T
	ctx     context.Context
	prof    profile
	c       *cluster
	probe   *prober
	ld      *load
	clients []*simClient
	members map[string][]*simClient
	rng     *rand.Rand
	faults  []faultResult
	report  report
	// redisLost is when Redis last lost its data.
	redisLost time.Time
	resent    map[string]bool // message ids resent already (their records are back)
}

func TestChaos(t *testing.T) {
	prof, ok := profiles[*flagProfile]
	if !ok {
		t.Fatalf("unknown profile %q (short or long)", *flagProfile)
	}
	if *flagPGStop > 0 {
		prof.PGStop = *flagPGStop
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	dir, err := os.MkdirTemp("", "parley-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	// The postgres OS user must reach its data dir under it.
	_ = os.Chmod(dir, 0o755)
	t.Logf("profile %s, seed %d, Postgres stop %v, run directory %s", prof.Name, seed, prof.PGStop, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &run{t: t, ctx: ctx, prof: prof, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	start := time.Now()
	r.c, err = startCluster(ctx, t, dir)
	if r.c != nil {
		defer r.c.shutdown()
	}
	defer func() {
		if t.Failed() || *flagKeep {
			t.Logf("run directory kept: %s (logs in %s)", dir, filepath.Join(dir, "logs"))
			return
		}
		if r.c != nil {
			r.c.shutdown()
		}
		_ = os.RemoveAll(dir)
	}()
	if err != nil {
		t.Fatal(err)
	}
	if r.probe, err = newProber(ctx, r.c); err != nil {
		t.Fatal(err)
	}
	if err := r.setupConversations(seed); err != nil {
		t.Fatal(err)
	}
	if d, err := r.probe.until(ctx, time.Now(), 60*time.Second); err != nil {
		t.Fatalf("the cluster does not pass a probe round before any fault: %v", err)
	} else {
		t.Logf("baseline probe round: %v", d.Round(time.Millisecond))
	}
	r.startLoad(seed)
	r.steady(prof.Warmup)
	for round := range prof.Rounds {
		r.faultSequence(round)
	}
	r.stopLoad()
	r.check()
	t.Logf("chaos run (%s profile) took %v", prof.Name, time.Since(start).Round(time.Second))
}

// setupConversations creates the groups: every user is in at least one,
// and one extra user ("outsider") is in none and must receive nothing.
func (r *run) setupConversations(seed uint64) error {
	p := r.prof
	users := make([]string, p.Users)
	for i := range users {
		users[i] = fmt.Sprintf("u%02d", i+1)
	}
	groups := make([][]string, p.Groups)
	for i, u := range users {
		groups[i%p.Groups] = append(groups[i%p.Groups], u)
	}
	for g := range groups {
		for len(groups[g]) < p.GroupSize {
			u := users[r.rng.IntN(len(users))]
			if !contains(groups[g], u) {
				groups[g] = append(groups[g], u)
			}
		}
	}
	userConvs := map[string][]string{}
	r.members = map[string][]*simClient{}
	for g, ms := range groups {
		conn, err := r.probe.dial(r.ctx, g%len(r.c.gateways), ms[0])
		if err != nil {
			return err
		}
		raw, err := request(r.ctx, conn, 20*time.Second, "conversation.create",
			map[string]any{"kind": "group", "title": fmt.Sprintf("chaos %d", g), "members": ms[1:]})
		conn.Close()
		if err != nil {
			return fmt.Errorf("create group %d: %w", g, err)
		}
		var cr struct {
			Conversation domain.Conversation `json:"conversation"`
		}
		if err := json.Unmarshal(raw, &cr); err != nil {
			return err
		}
		for _, u := range ms {
			userConvs[u] = append(userConvs[u], cr.Conversation.ConversationID)
		}
	}
	ld := &load{sendStop: make(chan struct{}), stop: make(chan struct{}), since: time.Now()}
	r.ld = ld
	for i, u := range append(users, "outsider") {
		c := newSimClient(u, userConvs[u], p.Client, r.c, ld, seed+uint64(i)*104729)
		r.clients = append(r.clients, c)
		for _, cv := range userConvs[u] {
			r.members[cv] = append(r.members[cv], c)
		}
	}
	r.t.Logf("%d clients in %d groups of >= %d members (+1 outsider)", p.Users, p.Groups, p.GroupSize)
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

var clientsWG sync.WaitGroup

func (r *run) startLoad(uint64) {
	for _, c := range r.clients {
		clientsWG.Add(1)
		go func() { defer clientsWG.Done(); c.run() }()
	}
}

// steady lets the load run for d (a deliberate load period, not a wait for
// a condition).
func (r *run) steady(d time.Duration) {
	r.t.Logf("load for %v (%d acked so far)", d, r.ackedCount())
	select {
	case <-r.ctx.Done():
	case <-time.After(d):
	}
}

func (r *run) ackedCount() int {
	n := 0
	for _, c := range r.clients {
		c.mu.Lock()
		n += len(c.acks)
		c.mu.Unlock()
	}
	return n
}

// faultNames is the default order of the fault sequence (-chaos.faults).
var faultNames = []string{"gateway", "consumers", "redis", "redis-frozen", "kafka", "postgres"}

// faultSequence injects every fault of the sequence once, in turn,
// measuring each recovery, with load between them.
func (r *run) faultSequence(round int) {
	names := faultNames
	if *flagFaults != "" {
		names = strings.Split(*flagFaults, ",")
	}
	for _, name := range names {
		f, ok := r.faultByName(strings.TrimSpace(name), round)
		if !ok {
			r.t.Fatalf("unknown fault %q (known: %s)", name, strings.Join(faultNames, ","))
		}
		f()
		r.steady(r.prof.Steady)
	}
}

// faultByName returns the injection of one fault; round picks which
// instance is hit.
func (r *run) faultByName(name string, round int) (func(), bool) {
	c := r.c
	switch name {
	case "gateway":
		gw := c.gateways[round%len(c.gateways)]
		return func() {
			r.fault(fmt.Sprintf("SIGKILL %s", gw.Name), func() error {
				gw.Stop(syscall.SIGKILL, time.Second)
				return nil
			}, nil, func() error {
				if err := gw.Start(); err != nil {
					return err
				}
				return gw.WaitReady(r.ctx, 60*time.Second)
			})
		}, true
	case "consumers":
		fo, pj := c.fanouts[round%2], c.projectors[round%2]
		return func() {
			r.fault(fmt.Sprintf("SIGKILL %s + %s", fo.Name, pj.Name), func() error {
				fo.Stop(syscall.SIGKILL, time.Second)
				pj.Stop(syscall.SIGKILL, time.Second)
				return nil
			}, nil, func() error {
				// The survivors took over (the probe passed); bring the dead
				// back, which hands partitions over once more.
				for _, n := range []*harness.Chatd{fo, pj} {
					if err := n.Start(); err != nil {
						return err
					}
				}
				for _, n := range []*harness.Chatd{fo, pj} {
					if err := n.WaitReady(r.ctx, 60*time.Second); err != nil {
						return err
					}
				}
				return nil
			})
		}, true
	case "redis":
		return func() {
			at := time.Now()
			r.fault("restart Redis (SIGKILL, empty)", func() error {
				c.rd.Stop(syscall.SIGKILL, time.Second)
				r.redisLost = time.Now()
				return nil
			}, func() error {
				if err := c.rd.Start(); err != nil {
					return err
				}
				return c.rd.WaitReady(r.ctx, 30*time.Second)
			}, func() error {
				r.resendAcked(at, 20)
				return nil
			})
		}, true
	case "redis-frozen":
		// A gateway that lags behind the shard streams when Redis dies loses
		// the deliveries it had not read: it must notice the gap and make
		// its clients resync.
		lag := c.gateways[(round+1)%len(c.gateways)]
		return func() {
			r.fault(fmt.Sprintf("restart Redis while %s is frozen", lag.Name), func() error {
				if err := lag.Signal(syscall.SIGSTOP); err != nil {
					return err
				}
				select { // deliveries pile up unread
				case <-r.ctx.Done():
				case <-time.After(2 * time.Second):
				}
				c.rd.Stop(syscall.SIGKILL, time.Second)
				r.redisLost = time.Now()
				return nil
			}, func() error {
				err := c.rd.Start()
				if err == nil {
					err = c.rd.WaitReady(r.ctx, 30*time.Second)
				}
				return errors.Join(err, lag.Signal(syscall.SIGCONT))
			}, nil)
		}, true
	case "kafka":
		sig := r.prof.KafkaSignal
		if r.prof.Rounds > 1 && round == 1 {
			sig = syscall.SIGTERM
		}
		return func() {
			r.fault(fmt.Sprintf("restart Kafka (%v)", sig), func() error {
				c.kf.Stop(sig, 60*time.Second)
				return nil
			}, func() error {
				if err := c.kf.Start(); err != nil {
					return err
				}
				return c.kf.WaitReady(r.ctx, 120*time.Second, chaosTopic)
			}, nil)
		}, true
	case "postgres-resend":
		// Opt-in (not in the default sequence): Postgres down after a Redis
		// data loss, and clients resend messages acked before the loss. The
		// send path skips its read-model check when the database is down
		// (commit 0779b5b), so such a resend may create a second message.
		return func() {
			r.fault(fmt.Sprintf("stop Postgres %v, resend acked messages", r.prof.PGStop), func() error {
				c.pg.StopMode("fast")
				return nil
			}, func() error {
				before := r.redisLost // messages whose idempotency records died with Redis
				if before.IsZero() {
					before = time.Now()
				}
				r.resendAcked(before, 20)
				select {
				case <-r.ctx.Done():
					return r.ctx.Err()
				case <-time.After(r.prof.PGStop):
				}
				return c.pg.Restart(r.ctx)
			}, nil)
		}, true
	case "postgres":
		return func() {
			r.fault(fmt.Sprintf("stop Postgres %v (fast)", r.prof.PGStop), func() error {
				c.pg.StopMode("fast")
				return nil
			}, func() error {
				select {
				case <-r.ctx.Done():
					return r.ctx.Err()
				case <-time.After(r.prof.PGStop): // the outage itself
				}
				return c.pg.Restart(r.ctx)
			}, nil)
		}, true
	}
	return nil, false
}

// fault injects, repairs (if there is something to repair) while probe
// rounds run, records the recovery, then runs after (restarting what was
// killed, once the survivors proved they took over).
func (r *run) fault(name string, inject, repair, after func() error) {
	res := faultResult{Name: name, At: time.Now()}
	r.t.Logf("fault at %s: %s", res.At.UTC().Format("15:04:05.000"), name)
	if err := inject(); err != nil {
		r.t.Errorf("%s: inject: %v", name, err)
	}
	type pr struct {
		d   time.Duration
		err error
	}
	probed := make(chan pr, 1)
	go func() {
		d, err := r.probe.until(r.ctx, res.At, r.prof.RecoveryLimit)
		probed <- pr{d, err}
	}()
	blipped := make(chan int, 1)
	go func() { blipped <- r.blips() }()
	if repair != nil {
		if err := repair(); err != nil {
			r.t.Errorf("%s: repair: %v", name, err)
		}
		res.Repaired = time.Since(res.At)
	}
	p := <-probed
	res.Recovery, res.Err = p.d, p.err
	if p.err != nil {
		r.t.Errorf("%s: %v", name, p.err)
	}
	res.Blipped = <-blipped
	res.Resumed, res.Dropped = r.resumed(res.At, time.Now())
	res.SendErrs = r.sendErrsBetween(res.At, res.At.Add(res.Recovery))
	res.Acks = r.acksBetween(res.At, res.At.Add(res.Recovery))
	r.t.Logf("  repaired after %v, recovered after %v; %d clients dropped, all resumed after %v; %d blipped; %d acked and %d failed send attempts until recovered",
		res.Repaired.Round(time.Millisecond), res.Recovery.Round(time.Millisecond), res.Dropped, res.Resumed.Round(time.Millisecond),
		res.Blipped, res.Acks, res.SendErrs)
	if after != nil {
		if err := after(); err != nil {
			r.t.Errorf("%s: after: %v", name, err)
		}
	}
	r.faults = append(r.faults, res)
}

// blips cuts the network of a share of the clients half a second into a
// fault, for 1-3 s each: they resume while the part is still down.
func (r *run) blips() int {
	select {
	case <-r.ctx.Done():
		return 0
	case <-time.After(500 * time.Millisecond):
	}
	n := 0
	for _, c := range r.clients {
		if r.rng.Float64() < r.prof.Blips && c.blip(time.Second+time.Duration(r.rng.IntN(2000))*time.Millisecond) {
			n++
		}
	}
	return n
}

func (r *run) acksBetween(from, to time.Time) int {
	n := 0
	for _, c := range r.clients {
		c.mu.Lock()
		for _, a := range c.acks {
			if !a.At.Before(from) && !a.At.After(to) {
				n++
			}
		}
		c.mu.Unlock()
	}
	return n
}

func (r *run) sendErrsBetween(from, to time.Time) int {
	n := 0
	for _, c := range r.clients {
		c.mu.Lock()
		for _, t := range c.sendErrs {
			if !t.Before(from) && !t.After(to) {
				n++
			}
		}
		c.mu.Unlock()
	}
	return n
}

// resumed finds clients whose connection dropped (not by their own choice)
// between from and to, and how long after from the last of them had synced
// again; it waits (bounded) for the ones still resyncing.
func (r *run) resumed(from, to time.Time) (time.Duration, int) {
	var worst time.Duration
	n := 0
	for _, c := range r.clients {
		drop, ok := c.firstDropBetween(from, to)
		if !ok {
			continue
		}
		n++
		var at time.Time
		_ = poll.Err(r.ctx, r.prof.RecoveryLimit, func() error {
			var ok bool
			if at, ok = c.syncAfter(drop); !ok {
				return fmt.Errorf("%s has not synced", c.user)
			}
			return nil
		})
		if at.IsZero() {
			r.t.Errorf("client %s dropped at %s never synced again", c.user, drop.UTC().Format("15:04:05.000"))
			continue
		}
		worst = max(worst, at.Sub(from))
	}
	return worst, n
}

// resendAcked repeats up to n sends acked before since (their
// idempotency records died with Redis): each must return the first message.
func (r *run) resendAcked(since time.Time, n int) {
	var picks []ack
	if r.resent == nil {
		r.resent = map[string]bool{}
	}
	for _, c := range r.clients {
		acks, _, _ := c.snapshot()
		for i := len(acks) - 1; i >= 0; i-- {
			if acks[i].At.Before(since) && !r.resent[acks[i].MsgID] {
				r.resent[acks[i].MsgID] = true
				picks = append(picks, acks[i])
				break
			}
		}
		if len(picks) >= n {
			break
		}
	}
	checked, mismatched := r.report.IdemChecked, r.report.IdemMismatch
	for _, a := range picks {
		r.report.IdemChecked++
		var m domain.Message
		err := poll.Err(r.ctx, 30*time.Second, func() error {
			alive := r.c.aliveGateways()
			conn, err := r.probe.dial(r.ctx, alive[r.rng.IntN(len(alive))], a.Sender)
			if err != nil {
				return err
			}
			defer conn.Close()
			raw, err := request(r.ctx, conn, 15*time.Second, "message.send",
				map[string]any{"conversation_id": a.Conv, "client_msg_id": a.CMID, "body": "chaos " + a.CMID})
			if err != nil {
				return err
			}
			var rep struct {
				Message domain.Message `json:"message"`
			}
			if err := json.Unmarshal(raw, &rep); err != nil {
				return err
			}
			m = rep.Message
			return nil
		})
		switch {
		case err != nil:
			// No answer within the bound is not a violation: nothing was
			// accepted, and the client would retry later.
			r.t.Logf("  resend of %s/%s (acked as %s seq %d) not answered: %v", a.Sender, a.CMID, a.MsgID, a.Seq, err)
		case m.MessageID != a.MsgID || m.Seq != a.Seq:
			r.report.IdemMismatch++
			r.report.sample("idempotency: resend of %s/%s after a Redis data loss returned message %s seq %d; first acked as %s seq %d",
				a.Sender, a.CMID, m.MessageID, m.Seq, a.MsgID, a.Seq)
		}
	}
	r.t.Logf("  resent %d messages acked before %s: %d returned another message", r.report.IdemChecked-checked,
		since.UTC().Format("15:04:05.000"), r.report.IdemMismatch-mismatched)
}

// stopLoad ends the load: no new messages; pending ones are retried until
// acked (bounded), then every client must have every acked message of its
// conversations (bounded), then clients close.
func (r *run) stopLoad() {
	close(r.ld.sendStop)
	r.t.Logf("load stopped at %d acked; draining pending sends", r.ackedCount())
	_ = poll.Err(r.ctx, r.prof.Drain, func() error {
		for _, c := range r.clients {
			if _, p, _ := c.snapshot(); p != nil {
				return fmt.Errorf("%s still has %s pending", c.user, p.CMID)
			}
		}
		return nil
	})
	t0 := time.Now()
	err := poll.Err(r.ctx, r.prof.Settle, func() error { return r.settled() })
	if err != nil {
		r.t.Logf("not settled after %v: %v", r.prof.Settle, err)
	} else {
		r.t.Logf("settled after %v", time.Since(t0).Round(time.Millisecond))
	}
	close(r.ld.stop)
	done := make(chan struct{})
	go func() { clientsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.t.Errorf("clients did not stop within 30s")
	}
}

// settled reports nil once every client is synced and holds every acked
// message of its conversations.
func (r *run) settled() error {
	for _, c := range r.clients {
		if len(c.convs) > 0 && !c.synced.Load() {
			return fmt.Errorf("%s is not connected and synced", c.user)
		}
	}
	for _, c := range r.clients {
		acks, _, _ := c.snapshot()
		for _, a := range acks {
			for _, m := range r.members[a.Conv] {
				if !m.inbox.Has(a.Conv, a.Seq, a.MsgID) {
					return fmt.Errorf("%s lacks %s (seq %d)", m.user, a.MsgID, a.Seq)
				}
			}
		}
	}
	return nil
}

// check verifies the run's guarantees and prints the tables.
func (r *run) check() {
	t := r.t
	lg := ledger(&r.report, r.clients)
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
	defer cancel()
	log, hwms, err := readLog(ctx, r.c.kf.Broker())
	if err != nil {
		t.Errorf("read the log: %v", err)
	}
	pool, err := pgxpool.New(ctx, r.c.pg.URL("chat"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Bounded wait for the projector to reach the end of the log.
	if err := poll.Err(ctx, r.prof.Settle, func() error {
		for p, hwm := range hwms {
			var off int64
			err := pool.QueryRow(ctx, `SELECT coalesce(max(next_offset),0) FROM `+chaosSchema+`.projector_offsets WHERE topic=$1 AND partition=$2`,
				chaosTopic, p).Scan(&off)
			if err != nil {
				return err
			}
			if off < hwm {
				return fmt.Errorf("partition %d projected to %d of %d", p, off, hwm)
			}
		}
		return nil
	}); err != nil {
		t.Errorf("the projector did not reach the end of the log: %v", err)
	}
	proj, err := harness.ReadProjection(ctx, pool, chaosSchema)
	if err != nil {
		t.Errorf("check the read model: %v", err)
	}
	extra := r.report.extra // the resends' samples, taken during the run
	r.report.Tally, r.report.extra = lg.Tally(proj), nil
	r.report.extra = append(r.report.extra, extra...)
	if err := checkLog(ctx, &r.report, pool, log); err != nil {
		t.Errorf("check the log: %v", err)
	}
	tdir := filepath.Join(r.c.dir, "timelines")
	if err := os.MkdirAll(tdir, 0o755); err == nil {
		for _, c := range r.clients {
			_ = c.writeTimeline(tdir)
		}
	}
	conns, syncFails, timeouts, refusals := clientStats(r.clients)
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== chaos run, profile %s: %d clients, %d conversations, %d connections, %d failed syncs, %d send timeouts; send errors: %s\n",
		r.prof.Name, len(r.clients), r.prof.Groups, conns, syncFails, timeouts, refusals)
	b.WriteString(r.report.table())
	fmt.Fprintf(&b, "\n  %-44s %9s %10s %8s %8s %8s %7s %10s\n", "fault", "repaired", "recovered", "dropped", "resumed", "blipped", "acked", "send errs")
	worst := map[string]time.Duration{}
	var names []string
	for _, f := range r.faults {
		rec := f.Recovery.Round(100 * time.Millisecond).String()
		if f.Err != nil {
			rec = "NEVER"
		}
		fmt.Fprintf(&b, "  %-44s %9v %10s %8d %8v %8d %7d %10d\n", f.Name, f.Repaired.Round(100*time.Millisecond), rec,
			f.Dropped, f.Resumed.Round(100*time.Millisecond), f.Blipped, f.Acks, f.SendErrs)
		k := faultKind(f.Name)
		if _, ok := worst[k]; !ok {
			names = append(names, k)
		}
		worst[k] = max(worst[k], f.Recovery)
	}
	b.WriteString(r.latencyLines())
	if r.prof.Rounds > 1 {
		b.WriteString("\n  max recovery per fault:\n")
		for _, k := range names {
			fmt.Fprintf(&b, "  %-44s %10v\n", k, worst[k].Round(100*time.Millisecond))
		}
	}
	t.Log(b.String())
	if s := r.report.samples(); len(s) > 0 {
		t.Logf("samples:\n  %s", strings.Join(s, "\n  "))
	}
	errs := r.c.logLines(30, func(l string) bool { return strings.Contains(l, `"level":"ERROR"`) })
	if len(errs) > 0 {
		t.Logf("first ERROR lines of the chatd logs:\n  %s", strings.Join(errs, "\n  "))
	}
	if r.report.failed() {
		t.Errorf("a guarantee broke: lost %d, duplicated %d, out of order %d, foreign %d (see the table and samples above)",
			r.report.Lost, r.report.Duplicated, r.report.OutOfOrder, r.report.Foreign)
	}
	if r.report.Acked == 0 {
		t.Errorf("no message was acked")
	}
}

// latencyLines reports the latency of successful sends outside the fault
// windows (injection to recovery), before the first Redis restart and
// after it: a Redis data loss changes the send path for IdemTTL.
func (r *run) latencyLines() string {
	var redisAt time.Time
	for _, f := range r.faults {
		if strings.Contains(f.Name, "Redis") {
			redisAt = f.At
			break
		}
	}
	var before, after []time.Duration
	for _, c := range r.clients {
		c.mu.Lock()
	samples:
		for _, l := range c.sendLat {
			for _, f := range r.faults { // the attempt overlaps the fault window
				if l.At.Add(l.D).After(f.At) && l.At.Before(f.At.Add(f.Recovery)) {
					continue samples
				}
			}
			if redisAt.IsZero() || l.At.Before(redisAt) {
				before = append(before, l.D)
			} else {
				after = append(after, l.D)
			}
		}
		c.mu.Unlock()
	}
	var b strings.Builder
	b.WriteString("\n  send latency outside fault windows (successful attempts):\n")
	line := func(what string, ds []time.Duration) {
		if len(ds) == 0 {
			return
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		q := func(p float64) time.Duration {
			return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Microsecond)
		}
		fmt.Fprintf(&b, "  %-44s n=%-6d p50 %-8v p99 %-8v max %v\n", what, len(ds), q(0.5), q(0.99), ds[len(ds)-1].Round(100*time.Microsecond))
	}
	line("before the first Redis restart", before)
	line("after it", after)
	return b.String()
}

// faultKind groups the rounds' faults by what was done, not to which
// instance.
func faultKind(name string) string {
	switch {
	case strings.Contains(name, "frozen"):
		return "restart Redis while a gateway is frozen"
	case strings.Contains(name, "gateway"):
		return "SIGKILL a gateway"
	case strings.Contains(name, "fanout"):
		return "SIGKILL a fanout + a projector"
	case strings.Contains(name, "Redis"):
		return "restart Redis"
	case strings.Contains(name, "Kafka"):
		return "restart Kafka"
	case strings.Contains(name, "Postgres"):
		return "stop Postgres"
	}
	return name
}

// firstDropBetween is the first involuntary connection loss in [from, to].
func (c *simClient) firstDropBetween(from, to time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.drops {
		if !d.Before(from) && !d.After(to) {
			return d, true
		}
	}
	return time.Time{}, false
}

// syncAfter is the first successful sync after t.
func (c *simClient) syncAfter(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.syncs {
		if s.After(t) {
			return s, true
		}
	}
	return time.Time{}, false
}
