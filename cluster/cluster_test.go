//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Shape of the bounded load: users in group conversations of four, spread
// over two gateway nodes, sending at most rate messages per second in all.
const (
	numUsers    = 24
	numConvs    = 12
	sendRate    = 40
	stepAcks    = 150 // progress (acked messages) required in every phase
	phaseWait   = 90 * time.Second
	drainWait   = 120 * time.Second
	rebalanceTo = 60 * time.Second
)

func TestClusterFailures(t *testing.T) {
	if os.Getenv("PARLEY_CLUSTER_SKIP_UP") == "" {
		script(t, "cluster-up.sh", "kafka", "redis")
	}
	vars := clusterEnv(t)
	binc := make(chan string, 1)
	go func() { // build chatd meanwhile: the added projector is a real process
		bin, err := buildChatd(t)
		if err != nil {
			t.Error(err)
		}
		binc <- bin
	}()

	env := testenv.New(t)
	cfg := env.Cfg
	if cfg.ReplicationFactor != 3 || cfg.MinInsyncReplicas != 2 || !strings.Contains(cfg.RedisURL, "cluster=true") {
		t.Fatalf("not pointed at the cluster profile: %+v", vars)
	}
	nodeA := env.StartNode("gateway", "fanout", "projector")
	nodeB := env.StartNode("gateway", "fanout", "projector")
	t.Logf("topic %s (RF %d, min ISR %d), schema %s, nodes %s %s", cfg.Topic, cfg.ReplicationFactor,
		cfg.MinInsyncReplicas, cfg.DBSchema, nodeA.Addr, nodeB.Addr)

	l := setupLoad(t, env, []string{nodeA.WS, nodeB.WS})
	connCtx, stopConns := context.WithCancel(context.Background())
	sendCtx, stopSends := context.WithCancel(connCtx)
	var conns, senders sync.WaitGroup
	for i, m := range l.users {
		conns.Add(1)
		senders.Add(1)
		go func() { defer conns.Done(); l.connect(connCtx, m, i) }()
		go func() { defer senders.Done(); l.sendLoop(sendCtx, connCtx, m) }()
	}
	defer func() { stopConns(); senders.Wait(); conns.Wait() }()

	start := time.Now()
	step := func(what string) {
		t.Helper()
		target := l.ackCount.Load() + stepAcks
		testenv.WaitFor(t, phaseWait, what+": "+fmt.Sprint(stepAcks)+" more acks", func() bool { return l.ackCount.Load() >= target })
		t.Logf("%6.1fs  %-44s acked %5d  reconnects %4d  errors: %s", time.Since(start).Seconds(), what,
			l.ackCount.Load(), l.reconnects.Load(), l.errSummary())
	}
	step("load running")

	// 1. A Kafka broker crashes: the leader of partition 0 of the test topic.
	broker := leaderOf(t, cfg.KafkaBrokers, cfg.Topic, 0)
	script(t, "cluster-down.sh", "--kill", fmt.Sprintf("kafka-%d", broker))
	step(fmt.Sprintf("kafka-%d killed", broker))
	script(t, "cluster-up.sh", "kafka")
	step(fmt.Sprintf("kafka-%d back", broker))

	// 2. A Redis primary crashes: the one serving fan-out shard 0; its
	// replica takes over after the cluster node timeout.
	rdb := clusterClient(t, cfg.RedisURL)
	t.Cleanup(func() { deletePrefix(t, rdb, cfg.RedisPrefix) })
	shardKey := cfg.RedisPrefix + ":{fanout.0}"
	port := redisPrimaryOf(t, rdb, shardKey)
	script(t, "cluster-down.sh", "--kill", "redis-"+port)
	testenv.WaitFor(t, phaseWait, "a replica to take over slot of "+shardKey, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rdb.ReloadState(ctx)
		c, err := rdb.MasterForKey(ctx, shardKey)
		return err == nil && !strings.HasSuffix(c.Options().Addr, ":"+port) && c.Ping(ctx).Err() == nil
	})
	step("redis-" + port + " killed, replica promoted")
	script(t, "cluster-up.sh", "redis")
	step("redis-" + port + " back (as a replica)")

	// 3. A fanout+projector process joins both consumer groups mid-load, then crashes.
	bin := <-binc
	if bin == "" {
		t.FailNow()
	}
	proc := startChatd(t, env, bin, "cluster-extra-"+env.Suffix, "fanout", "projector")
	waitOwners(t, l, proc, true)
	step("extra fanout+projector owns partitions")
	proc.Kill()
	waitOwners(t, l, proc, false)
	step("extra process killed, groups rebalanced")

	// 4. Stop sending, let every acked message reach every member and Postgres.
	stopSends()
	senders.Wait() // a send in flight is retried until acked or maxSendTime
	t.Logf("%6.1fs  load stopped: acked %d, gave up %d, reconnects %d", time.Since(start).Seconds(),
		l.ackCount.Load(), l.gaveUp.Load(), l.reconnects.Load())
	tally := l.drain(t)
	t.Logf("loss table:\n%s", tally.Table(harness.Line{Name: "sends never acked (gave up)", Value: l.gaveUp.Load()},
		harness.Line{Name: "reconnects (resumed with sync)", Value: l.reconnects.Load()}))
	if len(tally.Samples) > 0 {
		t.Logf("samples:\n  %s", strings.Join(tally.Samples, "\n  "))
	}
	for _, id := range tally.MissingIDs {
		explainMissing(t, l, id)
	}
	t.Logf("send/sync errors seen (all retried): %s", l.errSummary())
	if tally.Failed() {
		t.Fatalf("a guarantee broke: acked messages lost, duplicated or out of order (see the table)")
	}
	if tally.Acked < 5*stepAcks {
		t.Fatalf("only %d messages acked", tally.Acked)
	}
}

// setupLoad creates the conversations (through node A) and the members.
func setupLoad(t *testing.T, env *testenv.Env, gateways []string) *load {
	l := &load{env: env, gateways: gateways, convs: map[string][]*member{}, ledger: harness.NewLedger(),
		errCodes: map[string]int{}, limiter: rate.NewLimiter(sendRate, 1)}
	for i := range numUsers {
		id := fmt.Sprintf("cl%s_u%02d", env.Suffix, i)
		l.users = append(l.users, newMember(id, env.Token(id)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for c := range numConvs {
		ms := []*member{l.users[2*c%numUsers], l.users[(2*c+1)%numUsers], l.users[(2*c+2)%numUsers], l.users[(2*c+3)%numUsers]}
		creator, _, err := wsclient.Dial(ctx, gateways[0], ms[0].token, wsclient.Options{})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		raw, err := creator.Request(ctx, "conversation.create", map[string]any{"kind": "group", "title": fmt.Sprint("c", c),
			"members": []string{ms[1].id, ms[2].id, ms[3].id}})
		_ = creator.Close()
		if err != nil {
			t.Fatalf("create conversation: %v", err)
		}
		var r struct {
			Conversation domain.Conversation `json:"conversation"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			m.join(r.Conversation.ConversationID, r.Conversation.LastSeq)
		}
		l.convs[r.Conversation.ConversationID] = ms
	}
	for _, m := range l.users {
		l.ledger.Enroll(m.inbox)
	}
	return l
}

func clusterClient(t *testing.T, url string) *redis.ClusterClient {
	t.Helper()
	u, err := redisstore.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb, ok := u.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("CHAT_REDIS_URL does not name a cluster")
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// deletePrefix drops the test's keys from every primary: the shard streams
// have no TTL and the cluster profile's nodes have a memory limit.
func deletePrefix(t *testing.T, rdb *redis.ClusterClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := redisstore.DeletePrefix(ctx, rdb, prefix)
	t.Logf("deleted %d Redis keys under %s: (err %v)", n, prefix, err)
}

// waitOwners waits until the extra process owns partitions in both consumer
// groups (joined), or owns none and the groups are stable again (left).
func waitOwners(t *testing.T, l *load, p *harness.Chatd, joined bool) {
	t.Helper()
	cfg := l.env.Cfg
	groups := map[string]string{
		cfg.GroupPrefix + app.ProjectorGroup: "parley-projector-" + p.NodeID,
		cfg.GroupPrefix + app.FanoutGroup:    "parley-fanout-" + p.NodeID,
	}
	what := "the extra process to own partitions in both groups"
	if !joined {
		what = "both groups to rebalance without the extra process"
	}
	deadline := time.Now().Add(rebalanceTo)
	for {
		ok := true
		for g, client := range groups {
			owners := groupOwners(cfg.KafkaBrokers, g, cfg.Topic)
			total := 0
			for _, n := range owners {
				total += n
			}
			if total != int(cfg.Partitions) || (owners[client] > 0) != joined {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; its log:\n%s", rebalanceTo, what, p.Tail(30))
		}
		pause(context.Background(), 200*time.Millisecond)
	}
}

// drain waits (bounded) until every acked message reached every member and
// the read model, then returns the final tally. It polls by hand rather
// than with testenv.WaitFor so that the table is printed even on a timeout.
func (l *load) drain(t *testing.T) harness.Tally {
	deadline := time.Now().Add(drainWait)
	for {
		proj, err := harness.ReadProjection(context.Background(), l.env.Pool, l.env.Cfg.DBSchema)
		if err != nil {
			t.Logf("read model: %v", err)
		}
		tally := l.ledger.Tally(proj)
		if err == nil && (tally.Lost == 0 && tally.PGMissing == 0 || time.Now().After(deadline)) {
			return tally
		}
		if time.Now().After(deadline) { // never judged without the read model
			t.Fatalf("the read model could not be read at the drain's end: %v", err)
		}
		pause(context.Background(), 250*time.Millisecond)
	}
}
