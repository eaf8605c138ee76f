package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/testenv"
)

// A client may pipeline many commands and read the replies at its own
// pace: the replies wait for room in its send queue (the node stops reading
// its commands meanwhile) instead of overflowing it. Here 200 history pages
// of ~250 KB (50 MB in all, six times the queue's 8 MiB) are asked for at
// once and read with a pause after each: every one is answered, in order,
// and the connection stays open. (Before, the replies outran the writer
// and the client got 1008 "reads too slowly"; found by the adversarial
// suite.)
func TestPipelinedCommandsWaitForTheReader(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode()
	a := user("pipe")
	ca := dial(t, env, n, a)
	conv := createGroup(t, ca, user("q")).ConversationID
	body := strings.Repeat("p", 5000)
	var last int64
	for i := range 50 {
		last = send(t, ca, conv, fmt.Sprint(i, body)).Seq
	}
	testenv.WaitFor(t, 20*time.Second, "the messages in history", func() bool {
		h := request[historyReply](t, ca, "history", map[string]any{"conversation_id": conv, "limit": 1})
		return len(h.Messages) == 1 && h.Messages[0].Seq == last
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, _, err := websocket.DefaultDialer.DialContext(ctx, n.WS, http.Header{"Authorization": {"Bearer " + env.Token(a)}})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const asked = 200
	go func() {
		for i := range asked {
			req := fmt.Sprintf(`{"id":%d,"type":"history","data":{"conversation_id":%q,"limit":50}}`, i+1, conv)
			if raw.WriteMessage(websocket.TextMessage, []byte(req)) != nil {
				return
			}
		}
	}()
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for want := int64(1); want <= asked; {
		_, b, err := raw.ReadMessage()
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", want-1, asked, err)
		}
		var f struct {
			ID   int64  `json:"id"`
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &f) != nil || f.ID == 0 {
			continue // a push
		}
		if f.ID != want || f.Type != "ok" {
			t.Fatalf("reply %d: id %d type %s, want %d ok", want, f.ID, f.Type, want)
		}
		want++
		time.Sleep(5 * time.Millisecond) // a reader slower than the node
	}
}
