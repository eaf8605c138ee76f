package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/transport/httpapi"
)

// A client that sends its headers and then trickles (or withholds) its
// body is cut off at CHAT_HTTP_BODY_TIMEOUT instead of holding a
// connection and a handler for ever.
func TestHTTPBodyDeadline(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.HeaderTimeout, env.Cfg.BodyTimeout = 300*time.Millisecond, 600*time.Millisecond
	n := env.StartNode()
	conn, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":", env.Token(user("slow")))
	// The server must end the exchange by itself: a reply or a close, well
	// before this read's own deadline.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(bufio.NewReader(conn))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept a withheld body's connection open for %v", time.Since(start))
	}
}

// Request headers are bounded well below Go's 1 MiB default: a Socket.IO
// handshake or an API call with 100 KiB of headers gets 431, and one with
// a token and a few cookies' worth passes.
func TestHTTPHeaderBound(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode("gateway")
	get := func(pad int) int {
		req, err := http.NewRequest(http.MethodGet, n.HTTP+"/socket.io/?EIO=4&transport=polling", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("a", pad))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := get(100 << 10); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB of headers: %d, want 431", st)
	}
	if st := get(8 << 10); st != http.StatusOK {
		t.Fatalf("8 KiB of headers: %d, want 200", st)
	}
}

// The public listener's open connections are bounded (CHAT_MAX_HTTP_CONNS),
// not only the upgraded ones the hub counts: past the bound a new
// connection waits, unanswered, until one closes, instead of each idle one
// holding a goroutine and buffers of the node.
func TestHTTPConnectionBound(t *testing.T) {
	env := testenv.New(t)
	env.Cfg.MaxHTTPConns = 4
	n := env.StartNode("gateway")
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	c, err := net.Dial("tcp", n.Addr) // the kernel completes it; the server does not take it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("a connection past the bound was served: %q", line)
	}
	held[0].Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("once a connection closed, the waiting one got %q (%v), want 200", line, err)
	}
}

// A user's API calls running at once on a node are bounded, counted until
// each response is written: past MaxAPIInFlight a call is refused 429 at
// once, so a client that sends calls and reads no answer cannot make the
// node hold more than that many replies of its.
func TestAPICallsAtOnceAreBounded(t *testing.T) {
	env := testenv.New(t)
	n := env.StartNode()
	a := user("api")
	conv := createGroup(t, dial(t, env, n, a), user("apib")).ConversationID
	ctx := context.Background()
	lock, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // released below
	if _, err := lock.Exec(ctx, `LOCK TABLE `+pgx.Identifier{env.Cfg.DBSchema, "messages"}.Sanitize()+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	get := func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, n.HTTP+"/api/v1/conversations/"+conv+"/messages", nil)
		req.Header.Set("Authorization", "Bearer "+env.Token(a))
		return http.DefaultClient.Do(req)
	}
	statuses := make(chan int, httpapi.MaxAPIInFlight)
	for range httpapi.MaxAPIInFlight { // each waits behind the lock
		go func() {
			res, err := get()
			if err != nil {
				statuses <- 0
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	testenv.WaitFor(t, 10*time.Second, "the calls to wait for the lock", func() bool {
		return env.Count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%messages%'`) == httpapi.MaxAPIInFlight
	})
	res, err := get()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a call past %d at once: %d (Retry-After %q), want 429 with Retry-After", httpapi.MaxAPIInFlight, res.StatusCode, res.Header.Get("Retry-After"))
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range httpapi.MaxAPIInFlight {
		if st := <-statuses; st != http.StatusOK {
			t.Fatalf("a call within the bound answered %d", st)
		}
	}
	res, err = get()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a call once the others answered: %d", res.StatusCode)
	}
}
