package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// A command runs on its connection's reader, so no pong is read while it
// runs, and some run long: a sync waits up to 10 s for the read model and
// then replays at the client's pace (up to 5 minutes). A client that
// answered every ping must keep its connection after such a command (found
// by the adversarial suite: a sync longer than two ping intervals ended its
// connection with 1006 "read: i/o timeout" right after its reply).
func TestLongCommandKeepsTheConnection(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.PingInterval = 100 * time.Millisecond // a silent peer is dropped after 200 ms
	// No projector: a sync waits the full 10 s for the read model, then
	// answers unavailable.
	n := env.StartNode("gateway", "fanout")
	c := dial(t, env, n, user("patient"))
	conv := createGroup(t, c, user("other"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Request(ctx, "sync", map[string]any{"positions": map[string]int64{conv.ConversationID: 0}})
	var we *wsclient.Error
	if !errors.As(err, &we) || we.Code != "unavailable" {
		t.Fatalf("sync without a projector: %v, want unavailable", err)
	}
	t.Logf("the sync took %v", time.Since(start).Round(time.Millisecond))
	if _, err := c.Request(ctx, "typing", map[string]any{"conversation_id": conv.ConversationID}); err != nil {
		t.Fatalf("the next command: %v (connection closed: %v)", err, c.CloseErr)
	}
}
