package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/transport/auth"
)

// Rotating CHAT_JWT_SECRET: with the old secret in CHAT_JWT_PREVIOUS_SECRETS
// a node accepts tokens of both, on the WebSocket and the HTTP API, and still
// refuses tokens of any other secret.
func TestJWTSecretRotation(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.JWTPrevious = []string{"the-old-secret"}
	node := env.StartNode("gateway")
	mint := func(secret string) string {
		tok, err := auth.Mint(secret, "rotor", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for secret, want := range map[string]int{env.Cfg.JWTSecret: http.StatusOK, "the-old-secret": http.StatusOK, "a-retired-secret": http.StatusUnauthorized} {
		tok := mint(secret)
		c, resp, err := wsclient.Dial(context.Background(), node.WS, tok, wsclient.Options{})
		status := http.StatusOK
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			status = resp.StatusCode
		} else {
			c.Close()
		}
		if status != want {
			t.Errorf("WebSocket with a token of %q: status %d, want %d", secret, status, want)
		}
		req, _ := http.NewRequest(http.MethodGet, node.HTTP+"/api/v1/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("HTTP API with a token of %q: status %d, want %d", secret, res.StatusCode, want)
		}
	}
}
