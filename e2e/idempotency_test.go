package e2e

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/projections"
)

// dyingLog appends the event and then never returns, like a node killed
// after Kafka acked its produce but before it replied or recorded the send.
type dyingLog struct {
	inner    commands.EventLog
	appended chan int64
}

func (l dyingLog) Append(ctx context.Context, e domain.Event) (int64, error) {
	seq, err := l.inner.Append(ctx, e)
	if err == nil {
		l.appended <- seq
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

func (s *suite) testIdempotentDeadNode(t *testing.T) {
	a := user("a")
	ca := dial(t, s.env, s.n2, a)
	conv := createGroup(t, ca, user("b"))

	app := s.n1.App
	fresh := projections.Freshness{Store: app.Store, Log: app.KafkaLog}
	dying := dyingLog{inner: app.KafkaLog, appended: make(chan int64, 1)}
	dead := commands.New(commands.Deps{Log: dying, Members: app.Redis, Read: app.Store, Fresh: fresh,
		Idem: app.Redis, Ephemeral: app.Bus, Locks: app.Redis, PendingStale: time.Second})
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = dead.SendMessage.Handle(ctx, a, commands.SendMessage{ConversationID: conv.ConversationID, ClientMsgID: "dies", Body: "first"})
	}()
	var seq int64
	select {
	case seq = <-dying.appended:
	case <-time.After(20 * time.Second):
		t.Fatal("the dying node never produced")
	}
	// The client retries on another node while the first never answers.
	m := request[msgReply](t, ca, "message.send", map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "dies", "body": "retry"}).Message
	kill()
	<-done
	if m.Seq != seq || m.Body != "first" {
		t.Fatalf("retry after a dead node got %+v, want the produced message at seq %d", m, seq)
	}
	if err := fresh.WaitProjected(context.Background(), conv.ConversationID); err != nil {
		t.Fatal(err)
	}
	if n := s.env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type='chat.message_sent.v1'`, conv.ConversationID); n != 1 {
		t.Fatalf("%d message_sent events, want 1", n)
	}
}

// failingLog reports a failed produce; with written set, after appending the
// event anyway, like a produce that timed out while a broker restarted
// although the broker wrote it.
type failingLog struct {
	inner   commands.EventLog
	written bool
}

func (l failingLog) Append(ctx context.Context, e domain.Event) (int64, error) {
	if l.written {
		if _, err := l.inner.Append(ctx, e); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w: kafka produce: request timed out", domain.ErrUnavailable)
}

// A send whose produce failed, whether or not the log has it: the client's
// retries, racing on two nodes, get one message, and the log holds it once.
func (s *suite) testIdempotentFailedProduce(t *testing.T) {
	for _, written := range []bool{true, false} {
		t.Run(fmt.Sprint("written=", written), func(t *testing.T) {
			a := user("a")
			c1, c2 := dial(t, s.env, s.n1, a), dial(t, s.env, s.n2, a)
			conv := createGroup(t, c1, user("b"))

			app := s.n1.App
			fresh := projections.Freshness{Store: app.Store, Log: app.KafkaLog}
			failing := commands.New(commands.Deps{Log: failingLog{inner: app.KafkaLog, written: written}, Members: app.Redis,
				Read: app.Store, Fresh: fresh, Idem: app.Redis, Ephemeral: app.Bus, Locks: app.Redis})
			send := commands.SendMessage{ConversationID: conv.ConversationID, ClientMsgID: "retried", Body: "first"}
			if _, err := failing.SendMessage.Handle(context.Background(), a, send); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("first send: err %v, want unavailable", err)
			}
			got := sendAtOnce(t, []*wsclient.Client{c1, c2}, conv.ConversationID, "retried", "first")
			if got[0].Seq == 0 || !reflect.DeepEqual(got[0], got[1]) || got[0].Body != "first" {
				t.Fatalf("racing retries got %+v and %+v, want one message", got[0], got[1])
			}
			if err := fresh.WaitProjected(context.Background(), conv.ConversationID); err != nil {
				t.Fatal(err)
			}
			if n := s.env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type='chat.message_sent.v1'`, conv.ConversationID); n != 1 {
				t.Fatalf("%d message_sent events, want 1", n)
			}
		})
	}
}
