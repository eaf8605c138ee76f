//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/kafkalog"
)

// explainMissing logs what the stores hold for an acked message that is not
// in the read model: who got it live, the record the log holds at its seq,
// the read model's row at that seq, its partition's stored offset and any
// event set aside there. A failure then says which part lost it.
func explainMissing(t *testing.T, l *load, id string) {
	a, _ := l.ledger.Get(id)
	cfg := l.env.Cfg
	p := kafkalog.PartitionOf(a.Conv, int32(cfg.Partitions))
	var got []string
	for _, m := range l.convs[a.Conv] {
		got = append(got, fmt.Sprintf("%s:%d", m.id, m.inbox.Count(id)))
	}
	off := domain.OffsetOf(a.Seq)
	t.Logf("missing %s: conv %s acked seq %d (partition %d offset %d); live deliveries %v", id, a.Conv, a.Seq, p, off, got)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := func(what, sql string, args ...any) {
		rows, err := l.env.Pool.Query(ctx, fmt.Sprintf(sql, cfg.DBSchema), args...)
		if err != nil {
			t.Logf("  %s: %v", what, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			v, _ := rows.Values()
			t.Logf("  %s: %v", what, v)
		}
	}
	q("row at its seq", `SELECT message_id, client_msg_id, seq FROM %q.messages WHERE conversation_id=$1 AND seq=$2`, a.Conv, a.Seq)
	q("event at its seq", `SELECT id, type, data->>'message_id' FROM %q.events WHERE conversation_id=$1 AND seq=$2`, a.Conv, a.Seq)
	q("stored offset", `SELECT partition, next_offset FROM %q.projector_offsets WHERE partition=$1`, p)
	q("set aside", `SELECT log_offset, type, error FROM %q.dead_letters WHERE log_partition=$1`, p)
	r, err := kafkalog.NewPartitionReader(cfg.KafkaBrokers, cfg.Topic, "parley-cluster-explain")
	if err != nil {
		t.Logf("  log: %v", err)
		return
	}
	defer r.Close()
	err = r.ReadRange(ctx, map[int32]int64{p: off}, map[int32]int64{p: off + 1}, 1, func(cs []kafkalog.Consumed) error {
		for _, c := range cs {
			e, err := domain.DecodeEvent(c.Value)
			t.Logf("  log at offset %d (hole %d): type %s conv %s id %s decode err %v payload %.200s",
				c.Offset, c.Hole, e.Type, e.ConversationID, e.ID, err, c.Value)
		}
		return nil
	})
	if err != nil {
		t.Logf("  log: %v", err)
	}
}
