package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// A Socket.IO client on long-polling (every official client starts there)
// that resumes with a sync longer than its queue gets the POST that
// carried the sync answered at once: the replay goes at the client's
// pace, which the client sets by polling, and the official client polls
// no more while a POST is in flight once it has begun its upgrade. The
// sync ran on the session's reader, and the POST waited for it: the
// replay waited for a poll that never came, until the 5 min sync timeout.
func TestSocketIOSyncDoesNotHoldItsPost(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.RateLimit, env.Cfg.RateBurst = 10_000, 10_000 // for the sends below
	n := env.StartNode("gateway", "fanout", "projector")
	a, b := user("siosa"), user("siosb")
	ca := dial(t, env, n, a)
	conv := createGroup(t, ca, b).ConversationID
	const sent = 600 // a Socket.IO session's replay waits for room past 512 packets
	for i := range sent {
		send(t, ca, conv, fmt.Sprint("m", i))
	}

	c := &sioPoller{t: t, url: n.HTTP + "/socket.io/?EIO=4&transport=polling"}
	c.handshake()
	c.post(`40{"token":"` + env.Token(b) + `"}`)
	if got := c.next(); !strings.HasPrefix(got, "40") {
		t.Fatalf("connect: %q", got)
	}
	c.post(`421["sync",{"positions":{"` + conv + `":0}}]`) // fails on its 10 s timeout if held
	pushes, acked := 0, false
	for !acked {
		p := c.next()
		switch {
		case strings.HasPrefix(p, `42["message.new"`):
			pushes++
		case strings.HasPrefix(p, "431["):
			var res []struct{ OK bool }
			if err := json.Unmarshal([]byte(p[3:]), &res); err != nil || len(res) != 1 || !res[0].OK {
				t.Fatalf("sync ack: %q", p)
			}
			acked = true
		}
	}
	if pushes != sent {
		t.Fatalf("the sync replayed %d messages, want %d", pushes, sent)
	}
}

// sioPoller speaks Engine.IO long-polling by hand.
type sioPoller struct {
	t    *testing.T
	url  string
	sid  string
	seen []string
}

func (c *sioPoller) do(method, body string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := c.url
	if c.sid != "" {
		u += "&sid=" + c.sid
	}
	req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %.40q: %v", method, body, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		c.t.Fatalf("%s %.40q: %d %s", method, body, res.StatusCode, out)
	}
	return string(out)
}

func (c *sioPoller) post(body string) {
	c.t.Helper()
	if got := c.do(http.MethodPost, body); got != "ok" {
		c.t.Fatalf("POST %.40q: %q", body, got)
	}
}

func (c *sioPoller) handshake() {
	c.t.Helper()
	open := c.do(http.MethodGet, "")
	var o struct{ SID string }
	if !strings.HasPrefix(open, "0") || json.Unmarshal([]byte(open[1:]), &o) != nil {
		c.t.Fatalf("open: %q", open)
	}
	c.sid = o.SID
}

// next returns the next packet that is not a ping (answering pings).
func (c *sioPoller) next() string {
	c.t.Helper()
	for range 50 {
		if len(c.seen) > 0 {
			p := c.seen[0]
			c.seen = c.seen[1:]
			return p
		}
		for _, p := range strings.Split(c.do(http.MethodGet, ""), "\x1e") {
			if p == "2" {
				c.post("3")
				continue
			}
			c.seen = append(c.seen, p)
		}
	}
	c.t.Fatal("no packet")
	return ""
}
