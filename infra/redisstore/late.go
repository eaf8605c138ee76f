//go:build linux

package redisstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
)

// Late writes commands whose replies nobody waits for on a connection of
// its own (lateConn). It belongs to one goroutine (the write-behind's, or
// the fan-out publisher's, under its lock), which also calls Drain while
// it writes nothing. A nil *Late writes nothing (Write returns false): the
// client it was made for allows no such connection.
//
// Write returning true means the bytes are in the kernel's buffer, not that
// Redis applied them: a batch written just before Redis died or closed the
// connection can be lost unreported. Only writes whose loss costs nothing
// but time belong on it (the write-behind's: a hand-off the fan-out then
// reads from the log, a final idempotency record a retry then finds the
// slow way), or writes whose caller keeps them until Progress shows their
// replies came (WriteMarked: the fan-out's, fanoutbus.LatePublisher). A
// connection whose replies stop coming (a stopped or unreachable Redis) is
// closed after lateTimeout, and one whose last write failed is not dialled
// again for lateRetry.
type Late struct {
	opt      *redis.Options
	log      *slog.Logger
	failures prometheus.Counter // parley_redis_errors_total{op=<op>_write}
	refusals prometheus.Counter // parley_redis_errors_total{op=<op>_refused}
	conn     *lateConn          // nil: not connected
	failed   time.Time          // the last failure (dial, write, stall)
	closed   bool
	refusedN int    // since the last log line
	last     string // the last refusal's message
	// gen numbers the connections (0: none); refusedAt is the reply number
	// on the current connection of the first refusal not yet collected by
	// Progress (0: none).
	gen       uint64
	refusedAt uint64
}

// Mark says where a write's replies end: the connection it went on and
// the number of its last reply there. Progress tells whether they came.
type Mark struct{ Gen, End uint64 }

// lateRetry is how long after a failure Late refuses writes (its callers
// write through go-redis meanwhile).
var lateRetry = 5 * time.Second

// NewLate makes a Late for rdb's Redis; nil if rdb is not one Redis over
// plain TCP (lateOptions). Its connection is made at the first write. op
// names its failures and refusals in parley_redis_errors_total
// (op_write, op_refused), so that each user's are told apart.
func NewLate(rdb redis.UniversalClient, log *slog.Logger, op string) *Late {
	opt := lateOptions(rdb)
	if opt == nil {
		return nil
	}
	return &Late{opt: opt, log: log,
		failures: metrics.RedisErrors.WithLabelValues(op + "_write"),
		refusals: metrics.RedisErrors.WithLabelValues(op + "_refused")}
}

// Write writes b, which holds n RESP commands (AppendCommand); false if
// it could not (no connection, or the write failed: the connection is
// closed, and how much of b reached Redis is unknown).
func (l *Late) Write(b []byte, n int) bool {
	_, ok := l.WriteMarked(b, n)
	return ok
}

// WriteMarked is Write, and says where the replies of b end.
func (l *Late) WriteMarked(b []byte, n int) (Mark, bool) {
	if l == nil || l.closed {
		return Mark{}, false
	}
	if l.conn == nil {
		if time.Since(l.failed) < lateRetry {
			return Mark{}, false
		}
		c, err := dialLate(l.opt)
		if err != nil {
			l.fail("redis: no connection of its own for late replies; writing through the pool", err)
			return Mark{}, false
		}
		l.conn, l.gen, l.refusedAt = c, l.gen+1, 0
	}
	if err := l.conn.send(b, n, l.refused); err != nil {
		l.fail("redis: connection for late replies failed; writing through the pool", err)
		return Mark{}, false
	}
	return Mark{Gen: l.gen, End: l.conn.written}, true
}

// Progress reports the current connection (0: none), how many of its
// replies were read, and the number of the first refusal among them not
// reported before (0: none). A write marked with another connection may
// never have reached Redis.
func (l *Late) Progress() (gen, read, refusedAt uint64) {
	if l == nil || l.conn == nil {
		return 0, 0, 0
	}
	refusedAt, l.refusedAt = l.refusedAt, 0
	return l.gen, l.conn.read, refusedAt
}

// Drop closes the connection without reading the replies owed (a caller
// that publishes again whatever it held); the next write dials again after
// lateRetry.
func (l *Late) Drop() {
	if l == nil || l.conn == nil {
		return
	}
	l.closeConn()
	l.failed = time.Now()
}

// Owed is how many replies the connection owes (0 with none).
func (l *Late) Owed() int {
	if l == nil || l.conn == nil {
		return 0
	}
	return l.conn.pending
}

// Await reads the replies owed, waiting at most lateTimeout for them; a
// connection that fails or stays silent meanwhile is closed.
func (l *Late) Await() {
	if l == nil || l.conn == nil {
		return
	}
	if err := l.conn.await(l.refused); err != nil {
		l.fail("redis: connection for late replies failed", err)
	}
}

// fail closes the connection, counts and logs why, and holds off the
// next dial for lateRetry.
func (l *Late) fail(msg string, err error) {
	l.failures.Inc()
	l.log.Warn(msg, "err", err)
	l.closeConn()
	l.failed = time.Now()
}

// Drain reads the replies owed, without waiting, and logs the refusals
// counted since the last time; called about once a second while nothing is
// written, so that a refusal is logged and a dead connection found.
func (l *Late) Drain() {
	if l == nil {
		return
	}
	if l.conn != nil {
		if err := l.conn.drain(l.refused); err != nil {
			l.fail("redis: connection for late replies failed", err)
		}
	}
	if l.refusedN > 0 {
		l.log.Warn("redis: writes refused", "writes", l.refusedN, "last", l.last)
		l.refusedN = 0
	}
}

// refused counts a write Redis refused; Drain logs them.
func (l *Late) refused(msg string) {
	l.refusals.Inc()
	l.refusedN++
	l.last = msg
	if l.refusedAt == 0 && l.conn != nil {
		l.refusedAt = l.conn.read
	}
}

func (l *Late) closeConn() {
	if l.conn != nil {
		l.conn.close()
		l.conn = nil
	}
}

// Close waits (at most lateTimeout) for the replies owed, so that what was
// written last is not cut off by a reset, and closes the connection; later
// writes return false.
func (l *Late) Close() {
	if l == nil {
		return
	}
	l.closed = true
	if l.conn != nil {
		l.conn.finish(l.refused)
	}
	l.Drain()
	l.closeConn()
}

// lateConn is a connection to one Redis whose replies are read late: after
// the next write, or once a second, without waiting. It serves the
// write-behind, whose callers never wait for a reply.
//
// Its socket is a plain blocking file descriptor, outside Go's network
// poller: a reply that arrives wakes nobody. On this kind of VM a write to
// a sleeping process costs about 36 µs (its wake-up), against about 8 to a
// running one (docs/benchmarks.md, "Session 13"); through go-redis every
// write-behind pipeline woke the process for its reply, and made Redis pay
// the wake-up in its write. A refusal (an error reply: an out-of-memory or
// read-only Redis) is still read, counted and logged, only later; the
// writes' done funcs hear of a broken connection, not of a refusal.
type lateConn struct {
	fd      int
	pending int // replies not read yet
	// written counts the commands written, read the replies read.
	written, read uint64
	in            []byte // reply bytes read but not parsed (part of a reply)
	// progress is when a reply last came, or when replies started to be
	// owed: owed replies none of which came for lateTimeout mean Redis
	// stopped reading (stopped, unreachable), and the connection is closed.
	progress time.Time
	buf      [4096]byte
}

// lateTimeout bounds each blocking step (connect, write, the handshake's
// reads), so that a Redis that stopped answering fails the writes instead
// of holding the writer.
var lateTimeout = 2 * time.Second

// maxPending is how many unread replies a connection may owe before it is
// presumed stuck and closed.
const maxPending = 1 << 16

// lateOptions are the options of a client a lateConn can stand in for: one
// Redis over plain TCP (no TLS, no credentials provider); nil otherwise,
// and the writes keep to go-redis pipelines. (Options always hold a
// Dialer: go-redis fills in its own.)
func lateOptions(rdb redis.UniversalClient) *redis.Options {
	c, ok := rdb.(*redis.Client)
	if !ok {
		return nil
	}
	opt := c.Options()
	if (opt.Network != "" && opt.Network != "tcp") || opt.TLSConfig != nil ||
		opt.CredentialsProvider != nil || opt.CredentialsProviderContext != nil || opt.StreamingCredentialsProvider != nil {
		return nil
	}
	return opt
}

// dialLate connects and authenticates as opt says.
func dialLate(opt *redis.Options) (*lateConn, error) {
	addr, err := net.ResolveTCPAddr("tcp", opt.Addr)
	if err != nil {
		return nil, err
	}
	fd, err := connectTCP(addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", opt.Addr, err)
	}
	c := &lateConn{fd: fd}
	var hello []Cmd
	switch {
	case opt.Username != "":
		hello = append(hello, Cmd{"auth", opt.Username, opt.Password})
	case opt.Password != "":
		hello = append(hello, Cmd{"auth", opt.Password})
	}
	if opt.DB != 0 {
		hello = append(hello, Cmd{"select", opt.DB})
	}
	// A PING answered proves Redis reads this connection (a stopped Redis
	// still accepts connections: the kernel queues them).
	hello = append(hello, Cmd{"ping"})
	if err := c.handshake(hello); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func connectTCP(addr *net.TCPAddr) (int, error) {
	family, sa := syscall.AF_INET, syscall.Sockaddr(nil)
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa4 := &syscall.SockaddrInet4{Port: addr.Port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		family = syscall.AF_INET6
		sa6 := &syscall.SockaddrInet6{Port: addr.Port}
		copy(sa6.Addr[:], addr.IP.To16())
		sa = sa6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return -1, err
	}
	tv := syscall.NsecToTimeval(lateTimeout.Nanoseconds())
	for _, opt := range []int{syscall.SO_SNDTIMEO, syscall.SO_RCVTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			syscall.Close(fd)
			return -1, err
		}
	}
	// No delay; keepalives and a bound on unacknowledged data, so that a
	// peer that vanished (a dead host, a partition) fails the writes.
	for _, o := range [][3]int{{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1}, {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, tcpUserTimeout, int(lateTimeout.Milliseconds())}} {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			syscall.Close(fd)
			return -1, err
		}
	}
	for {
		err = syscall.Connect(fd, sa)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h), which package syscall
// lacks.
const tcpUserTimeout = 0x12

// handshake sends cmds and waits for their replies: each must not be an
// error.
func (c *lateConn) handshake(cmds []Cmd) error {
	if len(cmds) == 0 {
		return nil
	}
	var b []byte
	for _, cmd := range cmds {
		b = AppendCommand(b, cmd)
	}
	if err := c.write(b); err != nil {
		return err
	}
	for n := 0; n < len(cmds); {
		got, err := c.recv(0)
		if err == nil && !got {
			err = fmt.Errorf("no reply in %s", lateTimeout)
		}
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		for {
			size, refusal, err := replyLen(c.in)
			if err != nil {
				return fmt.Errorf("handshake: %w", err)
			}
			if size == 0 {
				break
			}
			if refusal != "" {
				return fmt.Errorf("handshake: %s", refusal)
			}
			c.in, n = c.in[size:], n+1
		}
	}
	return nil
}

// send writes b, which holds n commands, then reads whatever replies have
// arrived; refused is called for each error reply among them.
func (c *lateConn) send(b []byte, n int, refused func(string)) error {
	if err := c.write(b); err != nil {
		return err
	}
	if c.pending == 0 {
		c.progress = time.Now()
	}
	c.pending += n
	c.written += uint64(n)
	return c.drain(refused)
}

// finish stops writing and reads the replies owed, waiting at most
// lateTimeout for them.
func (c *lateConn) finish(refused func(string)) {
	_ = syscall.Shutdown(c.fd, syscall.SHUT_WR)
	_ = c.await(refused)
}

// await reads until no reply is owed; an error if the connection fails,
// or if lateTimeout passes first.
func (c *lateConn) await(refused func(string)) error {
	for deadline := time.Now().Add(lateTimeout); c.pending > 0; {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%d replies owed after %s: Redis stopped reading", c.pending, lateTimeout)
		}
		// The read blocks at most what is left (SO_RCVTIMEO).
		tv := syscall.NsecToTimeval(max(left, time.Millisecond).Nanoseconds())
		if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("read timeout: %w", err)
		}
		if _, err := c.recv(0); err != nil {
			return err
		}
		if err := c.parse(refused); err != nil {
			return err
		}
	}
	return nil
}

// recv reads what has arrived into c.in: with flags 0 it waits up to
// SO_RCVTIMEO, with MSG_DONTWAIT not at all; false if nothing came.
func (c *lateConn) recv(flags int) (bool, error) {
	for {
		n, _, err := syscall.Recvfrom(c.fd, c.buf[:], flags)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("read: %w", err)
		case n == 0:
			return false, errors.New("read: connection closed by Redis")
		}
		c.in = append(c.in, c.buf[:n]...)
		return true, nil
	}
}

func (c *lateConn) write(b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// drain reads the replies that have arrived, without waiting, to the end:
// a close by Redis behind them is seen now, not at the next write.
func (c *lateConn) drain(refused func(string)) error {
	for {
		got, err := c.recv(syscall.MSG_DONTWAIT)
		if err != nil {
			return err
		}
		if !got {
			break
		}
	}
	before := c.pending
	if err := c.parse(refused); err != nil {
		return err
	}
	if c.pending < before {
		c.progress = time.Now()
	}
	if c.pending > 0 && time.Since(c.progress) > lateTimeout {
		return fmt.Errorf("%d replies owed and none came for %s: Redis stopped reading", c.pending, lateTimeout)
	}
	return nil
}

// parse takes the complete replies off c.in.
func (c *lateConn) parse(refused func(string)) error {
	for {
		size, refusal, err := replyLen(c.in)
		if err != nil {
			return err
		}
		if size == 0 {
			break
		}
		c.in, c.pending, c.read = c.in[size:], c.pending-1, c.read+1
		if refusal != "" {
			refused(refusal)
		}
	}
	if len(c.in) == 0 {
		c.in = c.in[:0:0] // a drained buffer is not kept
	}
	if c.pending > maxPending || c.pending < 0 {
		return fmt.Errorf("%d replies owed: the connection is out of step", c.pending)
	}
	return nil
}

func (c *lateConn) close() { syscall.Close(c.fd) }
