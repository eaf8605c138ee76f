package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/internal/testenv"
)

// One connection must not take a node's memory: it fills its conversation
// with 8 KiB bodies of "<" (six bytes each once HTML-escaped JSON), asks
// for 40 history pages of 200 and stops reading. The replies are bounded
// (pages of at most 512 KiB of bodies, "<" kept as one byte) and so is its
// send queue in bytes: the connection is cut off (1008) instead of the node
// holding hundreds of megabytes for it.
func TestClientThatStopsReadingIsBoundedInBytes(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 100000, 100000
	n := env.StartNode()
	a := user("big")
	ca := dial(t, env, n, a)
	conv := createGroup(t, ca, user("x"))
	body := strings.Repeat("<", 8000)
	for i := range 100 {
		send(t, ca, conv.ConversationID, fmt.Sprint(i, body))
	}
	testenv.WaitFor(t, 20*time.Second, "the messages in history", func() bool {
		h := request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv.ConversationID, "limit": 1})
		return len(h.Messages) == 1 && strings.HasPrefix(h.Messages[0].Body, "99")
	})
	h := request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv.ConversationID, "limit": 200})
	if len(h.Messages) == 0 || len(h.Messages) >= 100 || !h.HasMore {
		t.Fatalf("a page of 200 x 8 KB bodies: %d messages, has_more %v; want it cut at 512 KiB with has_more", len(h.Messages), h.HasMore)
	}

	overflows := testutil.ToFloat64(metrics.SendQueueOverflows)
	hdr := http.Header{"Authorization": {"Bearer " + env.Token(a)}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, _, err := websocket.DefaultDialer.DialContext(ctx, n.WS, hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for i := range 40 { // and never read
		req := fmt.Sprintf(`{"id":%d,"type":"history","data":{"conversation_id":%q,"limit":200}}`, i+1, conv.ConversationID)
		if err := raw.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			break // the server may have cut us off already
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the connection cut off for its send queue's bytes", func() bool {
		return testutil.ToFloat64(metrics.SendQueueOverflows) > overflows
	})
}
