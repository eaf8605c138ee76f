//go:build cluster

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/internal/testenv"
)

// repoRoot is where the test's package lives, one level down.
const repoRoot = ".."

// script runs one of the cluster profile's scripts and fails the test
// (with its output) when it fails.
func script(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(repoRoot, "infra/services", name)}, args...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
}

// clusterEnv reads .data/cluster/env (written by cluster-up.sh) into the
// test's environment, so testenv.New points every node at the cluster.
func clusterEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".data/cluster/env"))
	if err != nil {
		t.Fatalf("cluster env: %v", err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
			t.Setenv(k, v)
		}
	}
	return vars
}

// leaderOf returns the broker id leading partition p of topic.
func leaderOf(t *testing.T, brokers []string, topic string, p int32) int32 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, kafkalog.SaramaConfig("parley-cluster-test"))
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	defer admin.Close()
	md, err := admin.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 {
		t.Fatalf("describe %s: %v", topic, err)
	}
	for _, pm := range md[0].Partitions {
		if pm.ID == p {
			return pm.Leader
		}
	}
	t.Fatalf("partition %d of %s not found", p, topic)
	return 0
}

// groupOwners returns, per client id, how many partitions of topic it owns
// in group (empty while the group rebalances or is gone).
func groupOwners(brokers []string, group, topic string) map[string]int {
	out := map[string]int{}
	admin, err := sarama.NewClusterAdmin(brokers, kafkalog.SaramaConfig("parley-cluster-test"))
	if err != nil {
		return out
	}
	defer admin.Close()
	gs, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(gs) != 1 || gs[0].State != "Stable" {
		return out
	}
	for _, m := range gs[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil || a == nil {
			continue
		}
		out[m.ClientId] += len(a.Topics[topic])
	}
	return out
}

// redisPrimaryOf returns the port of the Redis primary serving key.
func redisPrimaryOf(t *testing.T, rdb *redis.ClusterClient, key string) string {
	t.Helper()
	c, err := rdb.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatalf("primary of %s: %v", key, err)
	}
	_, port, _ := strings.Cut(c.Options().Addr, ":")
	return port
}

// buildChatd builds the chatd binary the test starts as a process.
func buildChatd(t *testing.T) (string, error) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := harness.Build(ctx, dir, "chatd"); err != nil {
		return "", err
	}
	return filepath.Join(dir, "chatd"), nil
}

// startChatd runs bin with env's isolation (topic, schema, prefixes) and
// roles; it is killed at cleanup.
func startChatd(t *testing.T, env *testenv.Env, bin, nodeID string, roles ...string) *harness.Chatd {
	t.Helper()
	c := env.Cfg
	n, err := harness.NewChatd(bin, t.TempDir(), nodeID, strings.Join(roles, ","), append(slices.Clone(os.Environ()),
		"CHAT_DEV_AUTH=true", "CHAT_KAFKA_BROKERS="+strings.Join(c.KafkaBrokers, ","),
		"CHAT_REDIS_URL="+c.RedisURL, "CHAT_DATABASE_URL="+c.DatabaseURL,
		"CHAT_KAFKA_TOPIC="+c.Topic, "CHAT_KAFKA_PARTITIONS="+strconv.Itoa(int(c.Partitions)),
		"CHAT_DB_SCHEMA="+c.DBSchema, "CHAT_REDIS_PREFIX="+c.RedisPrefix, "CHAT_GROUP_PREFIX="+c.GroupPrefix,
		"CHAT_PROJECTOR_WAIT="+c.BatchWait.String(),
		"CHAT_LOG_LEVEL=info", "CHAT_LOG_FORMAT=json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("start chatd: %v", err)
	}
	t.Cleanup(n.Kill)
	return n
}
