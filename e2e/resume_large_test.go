package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/transport/gateway"
)

// resumeEventsDefault is how many events a member misses before it resumes
// (issue 15: "test 100,000"); PARLEY_RESUME_EVENTS sets another count, at
// least resumeEventsMin: the replay must outlast what the kernel's socket
// buffers take in (the node's send buffer grows to 4 MiB, some 12,000
// events), or a client that pauses never makes it wait for room.
const (
	resumeEventsDefault = 100000
	resumeEventsMin     = 40000
)

func resumeEvents(t *testing.T) int {
	s := os.Getenv("PARLEY_RESUME_EVENTS")
	if s == "" {
		return resumeEventsDefault
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < resumeEventsMin {
		t.Fatalf("PARLEY_RESUME_EVENTS=%q: want a count of at least %d", s, resumeEventsMin)
	}
	return n
}

// smallWindowDialer dials with a 64 KiB receive buffer, as a phone might:
// the kernel's autotuning could otherwise grow it to tens of MiB, enough to
// take in most of a replay whatever the client reads.
var smallWindowDialer = &websocket.Dialer{
	HandshakeTimeout: 10 * time.Second,
	NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}).DialContext,
}

// A member misses 100,000 events of its group and resumes with sync on the
// other node, over the native protocol and over Socket.IO: it reads slowly
// at first (it stops until the replay has filled its send queue and waits
// for room, several times), then at full speed, and gets every event once,
// in seq order, with no close; its send queue stays within its bounds all
// along. A member that stops reading during such a replay is still cut off.
func TestResumeLarge(t *testing.T) {
	total := resumeEvents(t)
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	writer := user("lw")
	members := map[string]string{}
	for _, k := range []string{"native", "sio", "nativeStop", "sioStop", "nativeLive", "sioLive"} {
		members[k] = user("lr")
	}
	cw := dial(t, env, n1, writer)
	conv := createGroup(t, cw, members["native"], members["sio"], members["nativeStop"], members["sioStop"],
		members["nativeLive"], members["sioLive"]).ConversationID
	cw.Close() // it would be pushed every event live

	start := time.Now()
	want := appendMessages(t, n1, conv, writer, total)
	wrote := time.Since(start)
	testenv.WaitFor(t, 3*time.Minute, "the read model to hold every message", func() bool {
		return env.Count(`SELECT count(*) FROM {s}.events WHERE conversation_id=$1 AND type=$2`, conv, domain.EvMessageSent) == total
	})
	projected := time.Since(start)
	// The fan-out too must be past them: a reader that connects while it
	// still works through them would get them live as well, held while its
	// sync runs (live pushes during a replay are another test's matter).
	waitFannedOut(t, env, n1)
	t.Logf("%d events appended in %v (%.0f/s), projected after %v, fanned out after %v",
		total, wrote.Round(time.Millisecond), float64(total)/wrote.Seconds(), projected.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// resume syncs member's connection c from 0 and reads the replay with
	// five pauses (prepare, if set, adds to what happens at them).
	resume := func(t *testing.T, c resumer, member string, prepare func(*testing.T, *replayReader)) {
		r := &replayReader{t: t, node: n2, user: member, want: want, read: c.read}
		if prepare != nil {
			prepare(t, r)
		}
		start := time.Now()
		if err := c.sync(conv); err != nil {
			t.Fatal(err)
		}
		r.run(5)
		r.report(time.Since(start))
	}
	t.Run("Native", func(t *testing.T) { resume(t, dialNativeRaw(t, env, n2, members["native"]), members["native"], nil) })
	t.Run("SocketIO", func(t *testing.T) { resume(t, dialSIO(t, env, n2, members["sio"]), members["sio"], nil) })
	// The two wait out the same write deadline: in parallel.
	t.Run("StopsReading", func(t *testing.T) {
		stop := func(t *testing.T, c resumer, member string) {
			t.Parallel()
			if err := c.sync(conv); err != nil {
				t.Fatal(err)
			}
			stopReading(t, n2, member, want, c.read)
		}
		t.Run("Native", func(t *testing.T) { stop(t, dialNativeRaw(t, env, n2, members["nativeStop"]), members["nativeStop"]) })
		t.Run("SocketIO", func(t *testing.T) { stop(t, dialSIO(t, env, n2, members["sioStop"]), members["sioStop"]) })
	})
	// The group chats on while a member resumes: three times more live
	// messages than its paused buffer holds (CHAT_SEND_QUEUE) reach the
	// node during its replay, and it still gets everything once, in order.
	chatDuringReplay := func(t *testing.T, r *replayReader) {
		r.onPause = func(pause int) {
			if pause != 2 {
				return
			}
			cw := dial(t, env, n1, writer)
			live := make([]int64, 3*env.Cfg.SendQueue)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < len(live); i += 8 {
						raw, err := cw.Request(context.Background(), "message.send", map[string]any{
							"conversation_id": conv, "client_msg_id": fmt.Sprint("live-", r.user, "-", i), "body": "live"})
						if err != nil {
							t.Error(err)
							return
						}
						var m msgReply
						_ = json.Unmarshal(raw, &m)
						live[i] = m.Message.Seq
					}
				})
			}
			wg.Wait()
			want = append(want, slices.Sorted(slices.Values(live))...)
			r.want = want
			waitFannedOut(t, env, n1)
		}
	}
	t.Run("NativeWhileGroupChats", func(t *testing.T) {
		resume(t, dialNativeRaw(t, env, n2, members["nativeLive"]), members["nativeLive"], chatDuringReplay)
	})
	t.Run("SocketIOWhileGroupChats", func(t *testing.T) {
		resume(t, dialSIO(t, env, n2, members["sioLive"]), members["sioLive"], chatDuringReplay)
	})
}

// waitFannedOut waits until the fan-out has passed every event of the log.
func waitFannedOut(t *testing.T, env *testenv.Env, n *testenv.Node) {
	t.Helper()
	testenv.WaitFor(t, 3*time.Minute, "the fan-out to pass every event", func() bool {
		lag, err := n.App.KafkaLog.GroupLag(context.Background(), env.Cfg.GroupPrefix+app.FanoutGroup)
		if err != nil {
			return false
		}
		for _, n := range lag {
			if n > 0 {
				return false
			}
		}
		return true
	})
}

// appendMessages appends n message.sent events of conv by actor straight
// to the log, as message.send does but many at once (the log batches
// concurrent appends), and returns their seqs in order.
func appendMessages(t *testing.T, n *testenv.Node, conv, actor string, count int) []int64 {
	t.Helper()
	seqs := make([]int64, count)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= count || failed.Load() != nil {
					return
				}
				e, err := domain.NewEvent(domain.EvMessageSent, conv, actor, time.Now(), domain.MessageSent{
					MessageID: domain.NewID("m_"), ClientMsgID: "resume-" + strconv.Itoa(i),
					Body: fmt.Sprintf("message %d of a long absence: the member resumes from seq 0", i)})
				if err == nil {
					seqs[i], err = n.App.KafkaLog.Append(context.Background(), e)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("append: %v", err)
	}
	// Concurrent appends land in any order: the log's order is the seqs'.
	sorted := slices.Sorted(slices.Values(seqs))
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			t.Fatalf("two appends got seq %d", sorted[i])
		}
	}
	return sorted
}

// frame is what a test client needs of a frame from the server, whatever
// the protocol: a message.new push with its seq, another push, the reply
// to the sync, or the end of the connection (err).
type frame struct {
	push  string
	seq   int64
	reply json.RawMessage
	err   error
}

// replayReader reads a replay, checks it and watches the node's send queue
// for the connection.
type replayReader struct {
	t    *testing.T
	node *testenv.Node
	user string
	want []int64
	read func() frame
	got  int
	// onPause, if set, runs at each pause once the replay waits for room.
	onPause func(pause int)
	// fast is when the last pause ended and fastFrom how many messages
	// had been read then: the rate at full speed.
	fast     time.Time
	fastFrom int
}

// run reads the replay to its reply: first pauses times it stops reading
// until the replay is waiting for room (its send queue half full), then
// reads on as fast as it can.
func (r *replayReader) run(pauses int) {
	t := r.t
	t.Helper()
	paused := 0
	for {
		// Stop reading at once, then every len(want)/(2*pauses) messages:
		// each time until the replay waits for room, its send queue half
		// full (the kernel's buffers are full first).
		if paused < pauses && r.got >= paused*len(r.want)/(2*pauses) {
			paused++
			seen := paused > 1
			testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("pause %d: the replay waiting for room", paused), func() bool {
				s, ok := findQueueStats(r.node, r.user) // registered a moment after the upgrade
				if seen = seen || ok; seen && !ok {
					r.closed(fmt.Sprintf("during pause %d", paused))
				}
				return ok && s.Frames >= s.MaxFrames/2
			})
			if r.onPause != nil {
				r.onPause(paused)
			}
			r.fast, r.fastFrom = time.Now(), r.got
		}
		f := r.read()
		switch {
		case f.err != nil:
			t.Fatalf("the connection ended after %d of %d messages: %v", r.got, len(r.want), f.err)
		case f.reply != nil:
			r.checkReply(f.reply)
			if paused < pauses {
				t.Fatalf("the replay ended after %d pauses of %d: too few events to test flow control", paused, pauses)
			}
			return
		case f.push == domain.PushMessageNew:
			if r.got >= len(r.want) || f.seq != r.want[r.got] {
				t.Fatalf("message %d of the replay has seq %d; want %v (in order, each once)", r.got, f.seq, r.next())
			}
			r.got++
		}
	}
}

// closed fails the test for a connection the node closed: with how it
// ended, after what the kernel still held for the client.
func (r *replayReader) closed(when string) {
	r.t.Helper()
	for {
		if f := r.read(); f.err != nil || f.reply != nil {
			r.t.Fatalf("the node closed the connection %s, after %d of %d messages: %v %s", when, r.got, len(r.want), f.err, f.reply)
		}
	}
}

func (r *replayReader) next() string {
	if r.got >= len(r.want) {
		return "no more"
	}
	return "seq " + strconv.FormatInt(r.want[r.got], 10)
}

func (r *replayReader) checkReply(raw json.RawMessage) {
	t := r.t
	t.Helper()
	var reply struct {
		Positions map[string]int64 `json:"positions"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		t.Fatalf("sync reply %s: %v", raw, err)
	}
	if r.got != len(r.want) {
		t.Fatalf("sync answered after %d of %d messages", r.got, len(r.want))
	}
	last := r.want[len(r.want)-1]
	for conv, pos := range reply.Positions {
		if pos != last {
			t.Fatalf("sync positions[%s] = %d, want %d", conv, pos, last)
		}
	}
}

// report checks the send queue's figures after the replay and logs them.
func (r *replayReader) report(took time.Duration) {
	t := r.t
	t.Helper()
	s := queueStats(t, r.node, r.user)
	t.Logf("replayed %d messages in %v with the pauses, %.0f/s after them; send queue peak %d frames / %d bytes, held with the batch being written %d frames / %d bytes (bounds %d frames, %d bytes)",
		r.got, took.Round(time.Millisecond), float64(r.got-r.fastFrom)/time.Since(r.fast).Seconds(),
		s.PeakFrames, s.PeakBytes, s.PeakHeldFrames, s.PeakHeldBytes, s.MaxFrames, s.MaxBytes)
	// Flow control engaged: the pauses filled the queue up to where the
	// replay waits for room...
	if s.PeakFrames < s.MaxFrames/2 {
		t.Errorf("the send queue peaked at %d frames of %d: the replay never waited for room", s.PeakFrames, s.MaxFrames)
	}
	// ...and the replay waited there: it never filled the queue, leaving
	// room for live pushes, and the memory the connection held for frames
	// (queued, plus the batch being written) stayed within twice the queue.
	if s.PeakFrames >= s.MaxFrames || s.PeakBytes >= s.MaxBytes {
		t.Errorf("the replay filled the send queue: peak %d frames / %d bytes of %d / %d", s.PeakFrames, s.PeakBytes, s.MaxFrames, s.MaxBytes)
	}
	if s.PeakHeldFrames > 2*s.MaxFrames || s.PeakHeldBytes > 2*s.MaxBytes {
		t.Errorf("the connection held %d frames / %d bytes, over twice its queue's bounds (%d / %d)", s.PeakHeldFrames, s.PeakHeldBytes, s.MaxFrames, s.MaxBytes)
	}
	if !connected(r.node, r.user) {
		t.Error("the connection is gone after the replay")
	}
}

// stopReading reads the first messages of a replay, then stops reading
// while the replay goes on: the node cuts the connection off (bounded
// wait). Read again, the connection yields a prefix of the replay, in order,
// and ends without the sync's reply.
func stopReading(t *testing.T, n *testenv.Node, user string, want []int64, read func() frame) {
	t.Helper()
	got := 0
	for got < 100 {
		f := read()
		if f.err != nil || f.reply != nil {
			t.Fatalf("the replay ended after %d messages: %v %s", got, f.err, f.reply)
		}
		if f.push == domain.PushMessageNew {
			got++
		}
	}
	testenv.WaitFor(t, 60*time.Second, "the node to cut off a client that stopped reading", func() bool {
		return !connected(n, user)
	})
	// What the kernel buffered is still readable: a prefix, then the end.
	var end frame
	for {
		f := read()
		if f.err != nil || f.reply != nil {
			end = f
			break
		}
		if f.push == domain.PushMessageNew {
			if got >= len(want) || f.seq != want[got] {
				t.Fatalf("message %d has seq %d, want %d", got, f.seq, want[min(got, len(want)-1)])
			}
			got++
		}
	}
	if end.reply != nil || got >= len(want) {
		t.Fatalf("a client that stopped reading got the whole replay (%d messages) and the reply %s", got, end.reply)
	}
	t.Logf("cut off after %d of %d messages: %v", got, len(want), end.err)
}

// connected reports whether user has a connection on n.
func connected(n *testenv.Node, user string) bool {
	found := false
	n.App.Hub.Each(func(c gateway.Client) { found = found || c.UserID() == user })
	return found
}

// queueStats are the send queue figures of user's one connection on n.
func queueStats(t *testing.T, n *testenv.Node, user string) gateway.QueueStats {
	t.Helper()
	s, ok := findQueueStats(n, user)
	if !ok {
		t.Fatalf("%s has no connection on the node", user)
	}
	return s
}

func findQueueStats(n *testenv.Node, user string) (s gateway.QueueStats, found bool) {
	n.App.Hub.Each(func(c gateway.Client) {
		if q, ok := c.(interface{ SendQueueStats() gateway.QueueStats }); ok && c.UserID() == user {
			s, found = q.SendQueueStats(), true
		}
	})
	return s, found
}

// nativeRaw is a native connection read by the test itself (wsclient reads
// as fast as it can; a slow reader must leave frames in the kernel).
type nativeRaw struct {
	t  *testing.T
	ws *websocket.Conn
}

// resumer is a test client that can sync a conversation and read frames.
type resumer interface {
	sync(conv string) error
	read() frame
}

func dialNativeRaw(t *testing.T, env *testenv.Env, n *testenv.Node, user string) *nativeRaw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := smallWindowDialer.DialContext(ctx, n.WS, http.Header{"Authorization": {"Bearer " + env.Token(user)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &nativeRaw{t: t, ws: ws}
}

func (c *nativeRaw) sync(conv string) error {
	return c.ws.WriteJSON(map[string]any{"id": 1, "type": "sync", "data": map[string]any{"positions": map[string]int64{conv: 0}}})
}

func (c *nativeRaw) read() frame {
	_ = c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return frame{err: err}
	}
	var f struct {
		ID    int64           `json:"id"`
		Type  string          `json:"type"`
		Seq   int64           `json:"seq"`
		Data  json.RawMessage `json:"data"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{err: fmt.Errorf("frame %s: %w", b, err)}
	}
	switch f.Type {
	case "ok":
		return frame{reply: f.Data}
	case "error":
		return frame{err: fmt.Errorf("sync: %s", f.Error)}
	}
	return frame{push: f.Type, seq: f.Seq}
}

// sioRaw is a Socket.IO v5 client over an Engine.IO v4 WebSocket, read by
// the test itself.
type sioRaw struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialSIO(t *testing.T, env *testenv.Env, n *testenv.Node, user string) *sioRaw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := smallWindowDialer.DialContext(ctx, "ws://"+n.Addr+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &sioRaw{t: t, ws: ws}
	if _, b, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(b), "0{") {
		t.Fatalf("engine.io open: %s %v", b, err)
	}
	auth, _ := json.Marshal(map[string]string{"token": env.Token(user)})
	if err := ws.WriteMessage(websocket.TextMessage, append([]byte("40"), auth...)); err != nil {
		t.Fatal(err)
	}
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("socket.io connect: %v", err)
		}
		if strings.HasPrefix(string(b), "40{") {
			return c
		}
		if strings.HasPrefix(string(b), "44") {
			t.Fatalf("socket.io connect refused: %s", b)
		}
		c.pong(b)
	}
}

// pong answers an Engine.IO ping.
func (c *sioRaw) pong(b []byte) {
	if string(b) == "2" {
		_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
	}
}

func (c *sioRaw) sync(conv string) error {
	b, _ := json.Marshal([]any{"sync", map[string]any{"positions": map[string]int64{conv: 0}}})
	return c.ws.WriteMessage(websocket.TextMessage, append([]byte("421"), b...))
}

func (c *sioRaw) read() frame {
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return frame{err: err}
		}
		s := string(b)
		switch {
		case strings.HasPrefix(s, "42"): // an event: [type, data, {"seq"}]
			var args []json.RawMessage
			if err := json.Unmarshal(b[2:], &args); err != nil || len(args) == 0 {
				return frame{err: fmt.Errorf("event %s: %v", b, err)}
			}
			var f frame
			_ = json.Unmarshal(args[0], &f.push)
			if len(args) > 2 {
				var meta struct {
					Seq int64 `json:"seq"`
				}
				_ = json.Unmarshal(args[2], &meta)
				f.seq = meta.Seq
			}
			return f
		case strings.HasPrefix(s, "431"): // the sync's ack: [{"ok", "data"|"error"}]
			var args []struct {
				OK    bool            `json:"ok"`
				Data  json.RawMessage `json:"data"`
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(b[3:], &args); err != nil || len(args) != 1 {
				return frame{err: fmt.Errorf("ack %s: %v", b, err)}
			}
			if !args[0].OK {
				return frame{err: fmt.Errorf("sync: %s", args[0].Error)}
			}
			return frame{reply: args[0].Data}
		case s == "1" || strings.HasPrefix(s, "41"):
			return frame{err: errors.New("closed by the server: " + s)}
		default:
			c.pong(b)
		}
	}
}
