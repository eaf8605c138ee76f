//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/harness"
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

// report is the outcome of a run: the shared tally (deliveries and the
// read model) and what only the chaos test checks: the Kafka log itself,
// the events read model against it, and idempotent resends after a Redis
// data loss.
type report struct {
	harness.Tally
	Unacked                                int
	LogDupMsgID, LogDupCMID, EventsMissing int
	IdemChecked, IdemMismatch              int
	extra                                  []string // samples of the chaos-only checks
}

func (r *report) sample(format string, a ...any) {
	if len(r.extra) < 40 {
		r.extra = append(r.extra, fmt.Sprintf(format, a...))
	}
}

// samples are the tally's samples, then the chaos-only checks'.
func (r *report) samples() []string { return append(append([]string{}, r.Samples...), r.extra...) }

// failed reports whether a guarantee broke.
func (r *report) failed() bool {
	return r.Tally.Failed() || r.LogDupMsgID+r.LogDupCMID+r.EventsMissing+r.IdemMismatch > 0
}

// ledger feeds the shared checker with every client's acks and inbox.
func ledger(r *report, clients []*simClient) *harness.Ledger {
	l := harness.NewLedger()
	byUser := map[string]*simClient{}
	for _, c := range clients {
		byUser[c.user] = c
		l.Enroll(c.inbox)
		acks, pending, anomalies := c.snapshot()
		if pending != nil {
			r.Unacked++
		}
		for _, a := range acks {
			l.Ack(harness.Ack{MsgID: a.MsgID, Conv: a.Conv, Sender: a.Sender, CMID: a.CMID, Seq: a.Seq, At: a.At})
		}
		for _, an := range anomalies {
			l.BadAck("user %s conv %s: %s (at %s)", an.User, an.Conv, an.Detail, an.At.UTC().Format("15:04:05.000"))
		}
	}
	l.Context = func(user string, at time.Time) string {
		return strings.Join(byUser[user].timelineAround(at, 5*time.Second), " | ")
	}
	return l
}

// checkLog checks the log itself (one message_sent per message id and per
// client_msg_id) and that the events read model holds every logged
// message (sync replays it).
func checkLog(ctx context.Context, r *report, pool harness.Querier, log []logMsg) error {
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
	rows, err := pool.Query(ctx, `SELECT conversation_id, seq FROM `+pgx.Identifier{chaosSchema, "events"}.Sanitize()+
		` WHERE type=$1`, domain.EvMessageSent)
	if err != nil {
		return fmt.Errorf("read the events read model: %w", err)
	}
	ev := map[string]bool{}
	var conv string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&conv, &seq}, func() error {
		ev[fmt.Sprintf("%s/%d", conv, seq)] = true
		return nil
	}); err != nil {
		return fmt.Errorf("read the events read model: %w", err)
	}
	for _, m := range log {
		if !ev[fmt.Sprintf("%s/%d", m.Conv, m.Seq)] {
			r.EventsMissing++
			r.sample("events read model lacks logged message %s (conv %s seq %d)", m.MsgID, m.Conv, m.Seq)
		}
	}
	return nil
}

// table renders the report: the shared tally, then the chaos-only rows.
func (r *report) table() string {
	return r.Tally.Table(
		harness.Line{Name: "sends never acked (run ended)", Value: r.Unacked},
		harness.Line{Name: "log: message id appended twice", Value: r.LogDupMsgID},
		harness.Line{Name: "log: client_msg_id appended as two messages", Value: r.LogDupCMID},
		harness.Line{Name: "events read model missing logged messages", Value: r.EventsMissing},
		harness.Line{Name: fmt.Sprintf("idempotent resends after Redis loss (%d)", r.IdemChecked),
			Value: fmt.Sprintf("%d returned another message", r.IdemMismatch)})
}
