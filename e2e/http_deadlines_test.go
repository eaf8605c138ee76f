package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
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
