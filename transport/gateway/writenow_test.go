package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/poll"
)

// TestFramesWrittenAtOnceKeepTheirOrder: frames written at once by their
// sender until the socket takes one only in part, then frames queued
// behind it (short ones and ones too long to write at once), reach a
// client that stopped reading whole and in order once it reads.
func TestFramesWrittenAtOnceKeepTheirOrder(t *testing.T) {
	c, cl := openConn(t, WSConfig{SendQueue: 1 << 20})

	pad, big := strings.Repeat("p", 900), strings.Repeat("b", 5000) // big: past wswrite.MaxNow
	frame := func(i int, body string) []byte { return fmt.Appendf(nil, `{"n":%d,"p":%q}`, i, body) }
	n := 0
	for ; n < 200000 && c.SendQueueStats().Unfinished == 0; n++ {
		if !c.enqueue(frame(n, pad)) {
			t.Fatalf("frame %d refused", n)
		}
	}
	if q := c.SendQueueStats(); q.Unfinished != 1 || q.Direct != n {
		t.Fatalf("after %d frames: direct %d, unfinished %d", n, q.Direct, q.Unfinished)
	}
	first := n
	body := func(i int) string {
		if i >= first && i%97 == 0 {
			return big
		}
		return pad
	}
	for ; n < first+2000; n++ { // queued behind the unfinished frame
		if !c.enqueue(frame(n, body(n))) {
			t.Fatalf("frame %d refused", n)
		}
	}
	_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		_, b, err := cl.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d of %d: %v", i, n, err)
		}
		if want := frame(i, body(i)); string(b) != string(want) {
			t.Fatalf("frame %d of %d (%d written at once): got %.60q", i, n, first, b)
		}
	}
}

// TestFramesWrittenAtOncePastAnOldDeadline: a write deadline left by an
// earlier write (1 ms) does not fail the frames written at once after it
// passed.
func TestFramesWrittenAtOncePastAnOldDeadline(t *testing.T) {
	c, cl := openConn(t, WSConfig{WriteWait: time.Millisecond})
	c.locked(func() { _ = c.write(websocket.TextMessage, []byte("first")) }) // through gorilla, with a deadline
	start := time.Now()
	poll.Until(t, time.Second, "the deadline to pass", func() bool { return time.Since(start) > 10*time.Millisecond })
	for i := range 10 {
		if !c.enqueue(fmt.Appendf(nil, "%d", i)) {
			t.Fatalf("frame %d refused", i)
		}
	}
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := -1; i < 10; i++ {
		_, b, err := cl.ReadMessage()
		want := fmt.Sprint(i)
		if i < 0 {
			want = "first"
		}
		if err != nil || string(b) != want {
			t.Fatalf("frame %d: %q, %v", i, b, err)
		}
	}
	if q := c.SendQueueStats(); q.Direct != 10 {
		t.Fatalf("%d frames written at once, want 10", q.Direct)
	}
}

// openConn serves one native connection with cfg and dials it.
func openConn(t *testing.T, cfg WSConfig) (*wsConn, *websocket.Conn) {
	t.Helper()
	hub := NewHub(0, 0)
	s, err := NewWSServer(cfg, hub, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Serve(w, r, "u1", time.Time{})
	}))
	t.Cleanup(hs.Close)
	cl, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	var c *wsConn
	poll.Until(t, 5*time.Second, "the connection to register", func() bool {
		hub.Each(func(x Client) { c = x.(*wsConn) })
		return c != nil
	})
	return c, cl
}
