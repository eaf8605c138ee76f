package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
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
