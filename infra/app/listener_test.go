package app

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// The limited listener's connections still expose their socket (the
// gateways write frames on it directly), a slot comes back at a
// connection's Close (once, however often it is closed), and closing the
// listener ends an Accept that waits for a slot.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(inner, 1)
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := first.(syscall.Conn); !ok {
		t.Fatalf("an accepted %T hides its socket", first)
	}
	dial()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case c := <-accepted:
		t.Fatalf("a second connection was handed out past the bound of 1: %v", c.RemoteAddr())
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close gives back nothing more
	second := <-accepted
	second.Close()
	done := make(chan error, 1)
	go func() {
		l.sem <- struct{}{} // take the slot: the next Accept waits
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept waiting for a slot on a closed listener: %v, want net.ErrClosed", err)
	}
}
