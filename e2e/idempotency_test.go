package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
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
		Idem: app.Redis, Ephemeral: app.Bus, PendingStale: time.Second})
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
	if n := s.env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type='chat.message_sent.v1'`, conv.ConversationID); n != 1 {
		t.Fatalf("%d message_sent events, want 1", n)
	}
}
