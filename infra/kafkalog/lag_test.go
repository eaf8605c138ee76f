package kafkalog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/testenv"
)

// GroupLag counts, per partition, the events past the group's committed
// offset, and everything for a group that never committed.
func TestGroupLag(t *testing.T) {
	env := testenv.New(t)
	l := openLog(t, env)
	ctx := context.Background()
	const n = 6
	for i := range n {
		e := domain.Event{ID: fmt.Sprintf("e%d", i), Type: "test.v1", ConversationID: fmt.Sprintf("c%d", i%3), At: time.Now()}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	group := env.Cfg.GroupPrefix + "lagtest"
	lag, err := l.GroupLag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, v := range lag {
		total += v
	}
	if len(lag) != int(env.Cfg.Partitions) || total != n {
		t.Fatalf("lag of a new group: %v, want %d partitions summing to %d", lag, env.Cfg.Partitions, n)
	}

	// Commit one partition to its end: its lag drops to 0, the others stay.
	var p int32
	for p = range lag {
		if lag[p] > 0 {
			break
		}
	}
	hwm, err := l.HighWaterMark(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, app.KafkaConfig(env.Cfg).WithClientID("lag-test"), group, p, hwm)
	testenv.WaitFor(t, 10*time.Second, "the committed partition's lag to drop", func() bool {
		after, err := l.GroupLag(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		sum := int64(0)
		for _, v := range after {
			sum += v
		}
		return after[p] == 0 && sum == total-lag[p]
	})
}

func commit(t *testing.T, kc kafkalog.Config, group string, p int32, offset int64) {
	t.Helper()
	topic := kc.Topic
	c, err := kafkalog.NewClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	om, err := sarama.NewOffsetManagerFromClient(group, c)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, p)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(offset, "")
	om.Commit()
	if err := pom.Close(); err != nil {
		t.Fatal(err)
	}
	if err := om.Close(); err != nil {
		t.Fatal(err)
	}
}
