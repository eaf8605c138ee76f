package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// One sync names at most 1000 conversations, and pays the rate limiter one
// command per 50 of them: a client cannot make the node check thousands of
// conversations for the price of one frame.
func TestSyncPositionsAreBoundedAndCharged(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 0.01, 40 // the burst is all a user has
	n := env.StartNode()
	u := user("s")
	positions := func(k int) map[string]any {
		p := make(map[string]any, k)
		for i := range k {
			p[fmt.Sprintf("c_nosuch%05d", i)] = 0
		}
		return map[string]any{"positions": p}
	}
	try := func(c *wsclient.Client, typ string, data any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.Request(ctx, typ, data)
		return err
	}
	code := func(err error) string {
		var we *wsclient.Error
		if errors.As(err, &we) {
			return we.Code
		}
		return fmt.Sprint(err)
	}

	c1 := dial(t, env, n, u)
	if err := try(c1, "sync", positions(1001)); code(err) != "bad_request" || !strings.Contains(err.Error(), "positions") {
		t.Fatalf("sync of 1001 conversations: %v, want bad_request naming positions", err)
	}

	// Another user: the refused sync was charged to u's bucket too.
	c2 := dial(t, env, n, user("s2"))
	if err := try(c2, "sync", positions(1000)); err != nil {
		t.Fatalf("sync of 1000 conversations: %v", err)
	}
	// It cost 21 of the 40: a second one does not fit, a plain command does.
	if err := try(c2, "sync", positions(1000)); code(err) != "rate_limited" {
		t.Fatalf("second sync of 1000 conversations: %v, want rate_limited", err)
	}
	if err := try(c2, "conversation.list", map[string]any{}); err != nil {
		t.Fatalf("conversation.list after the refused sync: %v", err)
	}
}
