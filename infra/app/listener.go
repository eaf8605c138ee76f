package app

import (
	"net"
	"sync"
)

// limitListener bounds the open connections a listener hands out: past
// max, Accept waits until one closes, the new ones waiting in the kernel's
// backlog. Unlike golang.org/x/net/netutil's, a TCP connection is handed out
// as a type that embeds *net.TCPConn, so it still implements syscall.Conn:
// the gateways write frames on the socket directly (transport/wswrite),
// and behind netutil's wrapper they fell back to the slower path (10 µs a
// message more for each gateway, docs/benchmarks.md "Session 18").
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, max), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	release := func() { <-l.sem }
	if tc, ok := c.(*net.TCPConn); ok {
		return &limitedTCPConn{TCPConn: tc, release: release}, nil
	}
	return &limitedConn{Conn: c, release: release}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitedTCPConn gives its slot back once, at its first Close.
type limitedTCPConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

// limitedConn is limitedTCPConn for any other connection.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
