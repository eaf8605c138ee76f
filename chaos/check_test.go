//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
)

// logMsg is a message_sent event as the Kafka log holds it.
type logMsg struct {
	Conv, MsgID, Sender, CMID string
	Seq                       int64
}

// readLog reads every message_sent event of the topic, from offset 0 to the
// high-water mark of each partition.
func readLog(ctx context.Context, broker string) ([]logMsg, map[int32]int64, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	client, err := sarama.NewClient([]string{broker}, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, nil, err
	}
	defer consumer.Close()
	var out []logMsg
	hwms := map[int32]int64{}
	for p := range int32(partitions) {
		hwm, err := client.GetOffset(chaosTopic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, nil, err
		}
		hwms[p] = hwm
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(chaosTopic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, nil, err
		}
		timeout := time.After(60 * time.Second)
	read:
		for {
			select {
			case m := <-pc.Messages():
				if e, err := domain.DecodeEvent(m.Value); err == nil && e.Type == domain.EvMessageSent {
					var ms domain.MessageSent
					if e.Payload(&ms) == nil {
						out = append(out, logMsg{Conv: e.ConversationID, MsgID: ms.MessageID, Sender: e.Actor, CMID: ms.ClientMsgID, Seq: domain.SeqOf(m.Offset)})
					}
				}
				if m.Offset+1 >= hwm {
					break read
				}
			case <-timeout:
				pc.Close()
				return nil, nil, fmt.Errorf("partition %d: timed out reading up to %d", p, hwm)
			case <-ctx.Done():
				pc.Close()
				return nil, nil, ctx.Err()
			}
		}
		pc.Close()
	}
	return out, hwms, nil
}

// report is the outcome of a run.
type report struct {
	Acked, Expected, Delivered, Lost, Duplicated, OutOfOrder, Foreign int
	BadAcks, Unacked                                                  int
	PGMissing, PGMismatch                                             int
	LogDupMsgID, LogDupCMID, EventsMissing                            int
	IdemChecked, IdemMismatch                                         int
	Samples                                                           []string
}

func (r *report) sample(format string, a ...any) {
	if len(r.Samples) < 40 {
		r.Samples = append(r.Samples, fmt.Sprintf(format, a...))
	}
}

// failed reports whether a guarantee broke.
func (r *report) failed() bool {
	return r.Lost+r.Duplicated+r.OutOfOrder+r.Foreign+r.BadAcks+r.PGMissing+r.PGMismatch+
		r.LogDupMsgID+r.LogDupCMID+r.EventsMissing+r.IdemMismatch > 0
}

// checkClients compares what every client received with what was acked.
func checkClients(r *report, clients []*simClient, members map[string][]*simClient) map[string]ack {
	acked := map[string]ack{}
	convSeq := map[string]string{} // conv/seq -> message id
	for _, c := range clients {
		acks, pending, anomalies := c.snapshot()
		if pending != nil {
			r.Unacked++
		}
		for _, a := range acks {
			if prev, ok := acked[a.MsgID]; ok && (prev.CMID != a.CMID || prev.Sender != a.Sender) {
				r.BadAcks++
				r.sample("bad ack: message %s acked for %s/%s and for %s/%s", a.MsgID, prev.Sender, prev.CMID, a.Sender, a.CMID)
			}
			k := fmt.Sprintf("%s/%d", a.Conv, a.Seq)
			if id, ok := convSeq[k]; ok && id != a.MsgID {
				r.BadAcks++
				r.sample("bad ack: seq %s acked for messages %s and %s", k, id, a.MsgID)
			}
			convSeq[k] = a.MsgID
			acked[a.MsgID] = a
		}
		for _, an := range anomalies {
			switch an.Kind {
			case "duplicate":
				r.Duplicated++
			case "out_of_order":
				r.OutOfOrder++
			case "foreign":
				r.Foreign++
			default:
				r.BadAcks++
			}
			r.sample("%s: user %s conv %s seq %d: %s (at %s)\n      timeline: %s", an.Kind, an.User, an.Conv, an.Seq, an.Detail,
				an.At.UTC().Format("15:04:05.000"), strings.Join(c.timelineAround(an.At, 3*time.Second), " | "))
		}
	}
	r.Acked = len(acked)
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return acked[ids[i]].At.Before(acked[ids[j]].At) })
	for _, id := range ids {
		a := acked[id]
		for _, m := range members[a.Conv] {
			r.Expected++
			if m.has(a.Conv, a.Seq, id) {
				r.Delivered++
				continue
			}
			r.Lost++
			r.sample("lost: message %s (conv %s seq %d, %s/%s, acked %s after %d attempts) never reached %s\n      timeline: %s",
				id, a.Conv, a.Seq, a.Sender, a.CMID, a.At.UTC().Format("15:04:05.000"), a.Attempts, m.user,
				strings.Join(m.timelineAround(a.At, 5*time.Second), " | "))
		}
	}
	return acked
}

// checkStore compares the acked messages with the read model and the log.
func checkStore(ctx context.Context, r *report, pool pgxQuerier, acked map[string]ack, log []logMsg) error {
	rows, err := pool.Query(ctx, `SELECT conversation_id, seq, message_id, sender_id, client_msg_id FROM `+
		pgx.Identifier{chaosSchema, "messages"}.Sanitize())
	if err != nil {
		return err
	}
	type row struct {
		conv, id, sender, cmid string
		seq                    int64
	}
	pg := map[string]row{}
	var x row
	if _, err := pgx.ForEachRow(rows, []any{&x.conv, &x.seq, &x.id, &x.sender, &x.cmid}, func() error {
		pg[x.id] = x
		return nil
	}); err != nil {
		return err
	}
	for id, a := range acked {
		got, ok := pg[id]
		switch {
		case !ok:
			r.PGMissing++
			r.sample("postgres: acked message %s (conv %s seq %d, %s/%s) not in %s.messages", id, a.Conv, a.Seq, a.Sender, a.CMID, chaosSchema)
		case got.seq != a.Seq || got.conv != a.Conv || got.cmid != a.CMID || got.sender != a.Sender:
			r.PGMismatch++
			r.sample("postgres: message %s is %+v, acked as %+v", id, got, a)
		}
	}
	// The log itself: one message_sent per message id and per client_msg_id.
	byID, byCMID := map[string][]logMsg{}, map[string][]logMsg{}
	for _, m := range log {
		byID[m.MsgID] = append(byID[m.MsgID], m)
		k := m.Conv + "/" + m.Sender + "/" + m.CMID
		byCMID[k] = append(byCMID[k], m)
	}
	for id, ms := range byID {
		if len(ms) > 1 {
			r.LogDupMsgID += len(ms) - 1
			r.sample("log: message %s appended %d times: %+v", id, len(ms), ms)
		}
	}
	for k, ms := range byCMID {
		if len(ms) > 1 && ms[0].MsgID != ms[1].MsgID {
			r.LogDupCMID += len(ms) - 1
			r.sample("log: client_msg_id %s appended %d times as different messages: %+v", k, len(ms), ms)
		}
	}
	// The events read model holds every logged event (sync replays it).
	rows, err = pool.Query(ctx, `SELECT conversation_id, seq FROM `+pgx.Identifier{chaosSchema, "events"}.Sanitize()+
		` WHERE type=$1`, domain.EvMessageSent)
	if err != nil {
		return err
	}
	ev := map[string]bool{}
	var conv string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&conv, &seq}, func() error {
		ev[fmt.Sprintf("%s/%d", conv, seq)] = true
		return nil
	}); err != nil {
		return err
	}
	for _, m := range log {
		if !ev[fmt.Sprintf("%s/%d", m.Conv, m.Seq)] {
			r.EventsMissing++
			r.sample("events read model lacks logged message %s (conv %s seq %d)", m.MsgID, m.Conv, m.Seq)
		}
	}
	return nil
}

type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// table renders the report.
func (r *report) table() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "  %-44s %v\n", k, v) }
	row("messages acked", r.Acked)
	row("deliveries expected (acked x members)", r.Expected)
	row("delivered", r.Delivered)
	row("lost", r.Lost)
	row("duplicated", r.Duplicated)
	row("out of order", r.OutOfOrder)
	row("received by a non-member", r.Foreign)
	row("bad acks", r.BadAcks)
	row("sends never acked (run ended)", r.Unacked)
	row("acked but missing in Postgres", r.PGMissing)
	row("acked but different in Postgres", r.PGMismatch)
	row("log: message id appended twice", r.LogDupMsgID)
	row("log: client_msg_id appended as two messages", r.LogDupCMID)
	row("events read model missing logged messages", r.EventsMissing)
	row(fmt.Sprintf("idempotent resends after Redis loss (%d)", r.IdemChecked), fmt.Sprintf("%d returned another message", r.IdemMismatch))
	return b.String()
}
