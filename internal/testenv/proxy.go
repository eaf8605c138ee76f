package testenv

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards loopback TCP connections to a target. Hold stops it
// passing bytes either way on the connections it picks, without closing
// anything: a peer's writes succeed and wait in the proxy and the kernel,
// as if the network stalled. Release passes what was held, in order, and
// everything after.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   *sync.Cond              // broadcast on Release
	match  func(chunk []byte) bool // set while holding
	conns  []net.Conn
	links  []*link
	closed bool
}

// link is one proxied connection.
type link struct{ held bool }

// NewProxy listens on a random loopback port; it closes with t.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	p.open = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Hold stops passing bytes, both ways, on each connection (current or
// later) from the first chunk its client sends that match accepts.
func (p *Proxy) Hold(match func(chunk []byte) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = match
}

// Release passes what was held and lets bytes flow again.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = nil
	for _, l := range p.links {
		l.held = false
	}
	p.open.Broadcast()
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.links = append(p.links, l)
		p.mu.Unlock()
		go p.pipe(l, up, c, true)
		go p.pipe(l, c, up, false)
	}
}

// pipe copies src to dst, each chunk waiting while l is held; when either
// side ends it closes both, once what it read was passed on. fromClient:
// src is the client, whose chunks Hold's match looks at.
func (p *Proxy) pipe(l *link, dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(l, fromClient, buf[:n]) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait blocks while l is held, holding it first if chunk is the client's
// and matches; false once the proxy is closed.
func (p *Proxy) wait(l *link, fromClient bool, chunk []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fromClient && p.match != nil && p.match(chunk) {
		l.held = true
	}
	for l.held && !p.closed {
		p.open.Wait()
	}
	return !p.closed
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.open.Broadcast()
	for _, c := range p.conns {
		c.Close()
	}
}
