package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/transport/auth"
	"github.com/parley-chat/parley/transport/gateway"
)

// A connection does not outlive its token: at exp the server closes it
// with 4001, and the client must get a new token to reconnect. A token that
// lives longer than CHAT_JWT_MAX_LIFETIME, or lacks the configured
// audience, is refused before the upgrade.
func TestConnectionEndsWithItsToken(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.JWTAudience, env.Cfg.JWTMaxLifetime = "parley-test", 2*time.Hour
	n := env.StartNode()
	policy := auth.Policy{Audience: "parley-test"}
	short, err := auth.MintFor(env.Cfg.JWTSecret, user("exp"), 1500*time.Millisecond, policy)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := wsclient.Dial(ctx, n.WS, short, wsclient.Options{})
	if err != nil {
		t.Fatalf("dial with a valid short token: %v", err)
	}
	defer c.Close()
	request[map[string]any](t, c, "conversation.list", map[string]any{})
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection outlived its token by 20 s")
	}
	var ce *websocket.CloseError
	if !errors.As(c.CloseErr, &ce) || ce.Code != gateway.CloseTokenExpired {
		t.Fatalf("closed with %v, want %d", c.CloseErr, gateway.CloseTokenExpired)
	}

	for name, tok := range map[string]string{
		"lives 3 h": must(auth.MintFor(env.Cfg.JWTSecret, user("exp"), 3*time.Hour, policy)),
		"no aud":    must(auth.Mint(env.Cfg.JWTSecret, user("exp"), time.Hour)),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, resp, err := wsclient.Dial(ctx, n.WS, tok, wsclient.Options{})
		cancel()
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: %v (response %v), want 401 before the upgrade", name, err, resp)
		}
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
