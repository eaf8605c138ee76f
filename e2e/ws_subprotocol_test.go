package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/transport/auth"
)

// The browser client's handshake: the token rides in Sec-WebSocket-Protocol
// beside "parley" (browsers cannot set Authorization on a WebSocket), never
// in the URL. A good token upgrades with "parley" selected and the token not
// echoed; a bad one gets 401 before any upgrade; no token reaches the logs.
func TestWebSocketSubprotocolAuth(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	browser := func(protocols string) wsclient.Options {
		// As Chromium sends it: one header, and the page's own Origin.
		return wsclient.Options{Header: http.Header{"Sec-WebSocket-Protocol": {protocols}, "Origin": {n.HTTP}}}
	}

	good := env.Token("sp_alice") // env.Token also forbids it in the node's logs
	c, resp, err := wsclient.Dial(ctx, n.WS, "", browser("parley, bearer."+good))
	if err != nil {
		t.Fatalf("subprotocol token refused: %v (%v)", err, resp)
	}
	if got := resp.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != auth.Subprotocol {
		t.Fatalf("selected subprotocol %q, want exactly %q", got, auth.Subprotocol)
	}
	conv := createGroup(t, c, "sp_bob")
	if !slices.Contains(conv.Members, "sp_alice") {
		t.Fatalf("the connection is not alice's: %+v", conv)
	}
	c.Close()

	// The order of the offer does not matter.
	c, resp, err = wsclient.Dial(ctx, n.WS, "", browser("bearer."+good+", parley"))
	if err != nil || resp.Header.Get("Sec-WebSocket-Protocol") != auth.Subprotocol {
		t.Fatalf("bearer first: %v, selected %q", err, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	c.Close()

	// The query parameter stays accepted (PROTOCOL.md); nothing offered,
	// nothing selected.
	c, resp, err = wsclient.Dial(ctx, n.WS+"?access_token="+good, "", wsclient.Options{})
	if err != nil || resp.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Fatalf("access_token query: %v, selected %q", err, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	c.Close()

	expired, err := auth.Mint(env.Cfg.JWTSecret, "sp_alice", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Past its exp, within the verifier's clock-skew leeway: it would be
	// closed as it opened (4001), so it is refused before the upgrade.
	justExpired, err := auth.Mint(env.Cfg.JWTSecret, "sp_alice", -2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Mint("not-the-secret", "sp_alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	garbage := "eyJhbGciOiJIUzI1NiJ9.spgarbage" + testenv.RandHex(8) + "." + testenv.RandHex(16)
	for name, offer := range map[string]string{
		"expired":            "parley, bearer." + expired,
		"just expired":       "parley, bearer." + justExpired,
		"forged":             "parley, bearer." + forged,
		"garbage":            "parley, bearer." + garbage,
		"empty bearer":       "parley, bearer.",
		"parley and nothing": "parley",
	} {
		_, resp, err := wsclient.Dial(ctx, n.WS, "", browser(offer))
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: err %v, resp %v; want 401 before any upgrade", name, err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Error struct{ Code string } }
		if json.Unmarshal(body, &e) != nil || e.Error.Code != "unauthorized" {
			t.Errorf("%s: body %s, want an unauthorized error", name, body)
		}
		if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
			t.Errorf("%s: a refusal selected subprotocol %q", name, p)
		}
	}
	// A bad token in the header is refused even with a good one in the query:
	// the first place that holds a token decides.
	if _, resp, err := wsclient.Dial(ctx, n.WS+"?access_token="+good, "", browser("parley, bearer."+garbage)); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad subprotocol token, good query: err %v, resp %v; want 401", err, resp)
	}

	n.Stop() // every line written
	if !env.Logs.HasLine("connection open", "sp_alice") {
		t.Fatal("the node's log lines were not captured: the check below would prove nothing")
	}
	for name, tok := range map[string]string{"good": good, "expired": expired, "forged": forged, "garbage": garbage} {
		if env.Logs.Contains(tok) {
			t.Errorf("the %s token reached the logs", name)
		}
		// Nor any part of it (a JWT's signature is its secret part).
		if sig := tok[strings.LastIndex(tok, ".")+1:]; len(sig) > 3 && env.Logs.Contains(sig) {
			t.Errorf("the %s token's signature reached the logs", name)
		}
	}
}
