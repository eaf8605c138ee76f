package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/transport/protocol"
)

// A node whose database is gone answers unavailable with a fixed message
// and a request id; the driver's text (host, port, database) reaches only
// the log line that carries that id.
func TestInternalTextNeverReachesClients(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.DatabaseURL = "postgres://parley@127.0.0.1:1/hidden_db_name?connect_timeout=1"
	n := env.StartNode("gateway")
	c := dial(t, env, n, user("e"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.Request(ctx, "conversation.list", map[string]any{})
	var we *wsclient.Error
	if !errors.As(err, &we) || we.Code != "unavailable" {
		t.Fatalf("conversation.list without a database: %v, want unavailable", err)
	}
	if we.Message != protocol.MessageUnavailable || strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "hidden_db_name") {
		t.Fatalf("the client got internal text: %v", err)
	}
	if we.RequestID == "" {
		t.Fatalf("no request id in %v", err)
	}
	testenv.WaitFor(t, 5*time.Second, "the log line with the request id and the cause", func() bool {
		return env.Logs.HasLine(`"request_id":"`+we.RequestID+`"`, "127.0.0.1:1")
	})
}
