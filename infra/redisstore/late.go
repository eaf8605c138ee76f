package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/infra/metrics"
)

// Late writes commands whose replies nobody waits for on a connection of
// its own (lateConn), safe for concurrent use. A nil *Late writes nothing
// (Write returns false): the client it was made for allows no such
// connection.
type Late struct {
	mu       sync.Mutex
	opt      *redis.Options
	log      *slog.Logger
	conn     *lateConn // nil: not connected
	failed   time.Time // the last dial's failure
	refusals int       // since the last log line
	last     string    // the last refusal's message
	stop     context.CancelFunc
	done     chan struct{}
}

// lateRetry is how long after a failed dial Late refuses writes (its
// callers write through go-redis meanwhile).
const lateRetry = 5 * time.Second

// NewLate makes a Late for rdb's Redis; nil if rdb is not one Redis over
// plain TCP (lateOptions). Its connection is made at the first write.
func NewLate(rdb redis.UniversalClient, log *slog.Logger) *Late {
	opt := lateOptions(rdb)
	if opt == nil {
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Late{opt: opt, log: log, stop: stop, done: make(chan struct{})}
	go l.drainEverySecond(ctx)
	return l
}

// drainEverySecond reads the replies owed while nothing is written: a
// refusal is logged within a second, a dead connection found.
func (l *Late) drainEverySecond(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.mu.Lock()
			l.drainLocked()
			l.mu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}

// Write writes b, which holds n RESP commands (AppendCommand); false if
// it could not (no connection, or the write failed: the connection is
// closed, and how much of b reached Redis is unknown).
func (l *Late) Write(b []byte, n int) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		if time.Since(l.failed) < lateRetry {
			return false
		}
		c, err := dialLate(l.opt)
		if err != nil {
			l.failed = time.Now()
			l.log.Warn("redis: no connection of its own for late replies; writing through the pool", "err", err)
			return false
		}
		l.conn = c
	}
	if err := l.conn.send(b, n, l.refused); err != nil {
		metrics.RedisErrors.WithLabelValues("late_write").Inc()
		l.log.Warn("redis: connection for late replies failed; writing through the pool", "err", err)
		l.closeLocked()
		return false
	}
	return true
}

func (l *Late) drainLocked() {
	if l.conn != nil {
		if err := l.conn.drain(l.refused); err != nil {
			l.log.Warn("redis: connection for late replies failed", "err", err)
			l.closeLocked()
		}
	}
	if l.refusals > 0 {
		l.log.Warn("redis: writes refused", "writes", l.refusals, "last", l.last)
		l.refusals = 0
	}
}

// refused counts a write Redis refused; drainLocked logs them, at most
// once a second.
func (l *Late) refused(msg string) {
	metrics.RedisErrors.WithLabelValues("late_refused").Inc()
	l.refusals++
	l.last = msg
}

func (l *Late) closeLocked() {
	if l.conn != nil {
		l.conn.close()
		l.conn = nil
	}
}

// Close reads the replies that have arrived and closes the connection.
func (l *Late) Close() {
	if l == nil {
		return
	}
	l.stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drainLocked()
	l.closeLocked()
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
	pending int    // replies not read yet
	in      []byte // reply bytes read but not parsed (part of a reply)
	buf     [4096]byte
}

// lateTimeout bounds each blocking step (connect, write, the handshake's
// reads), so that a Redis that stopped answering fails the writes instead
// of holding the writer.
const lateTimeout = 2 * time.Second

// maxPending is how many unread replies a connection may owe before it is
// presumed stuck and closed.
const maxPending = 1 << 20

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
	if opt.Password != "" {
		auth := Cmd{"auth", opt.Password}
		if opt.Username != "" {
			auth = Cmd{"auth", opt.Username, opt.Password}
		}
		hello = append(hello, auth)
	}
	if opt.DB != 0 {
		hello = append(hello, Cmd{"select", opt.DB})
	}
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
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return -1, err
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
		read, err := syscall.Read(c.fd, c.buf[:])
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("handshake: %w", err)
		}
		if read == 0 && err == nil {
			return errors.New("handshake: connection closed")
		}
		c.in = append(c.in, c.buf[:max(read, 0)]...)
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
	c.pending += n
	return c.drain(refused)
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

// drain reads the replies that have arrived, without waiting.
func (c *lateConn) drain(refused func(string)) error {
	for {
		n, _, err := syscall.Recvfrom(c.fd, c.buf[:], syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return errors.New("read: connection closed by Redis")
		}
		c.in = append(c.in, c.buf[:n]...)
		if n < len(c.buf) {
			break
		}
	}
	for {
		size, refusal, err := replyLen(c.in)
		if err != nil {
			return err
		}
		if size == 0 {
			break
		}
		if refusal != "" {
			refused(refusal)
		}
		c.in, c.pending = c.in[size:], c.pending-1
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

// AppendCommand appends cmd as a RESP array of bulk strings, for Late.
func AppendCommand(b []byte, cmd Cmd) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(cmd)), 10)
	b = append(b, '\r', '\n')
	for _, a := range cmd {
		switch v := a.(type) {
		case string:
			b = appendBulk(b, v)
		case []byte:
			b = appendBulk(b, v)
		case int:
			b = appendBulk(b, strconv.AppendInt(nil, int64(v), 10))
		case int64:
			b = appendBulk(b, strconv.AppendInt(nil, v, 10))
		default:
			panic(fmt.Sprintf("redisstore: argument of type %T", a)) // a caller's bug: Cmd says which types
		}
	}
	return b
}

func appendBulk[T string | []byte](b []byte, s T) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// maxReplyDepth bounds the nesting of the arrays replyLen walks.
const maxReplyDepth = 8

var errNotReply = errors.New("redis: bytes that are not a RESP2 reply")

// replyLen is the length of the first complete RESP2 reply in b (0 if b
// holds only the start of one) and, for an error reply, its message.
func replyLen(b []byte) (n int, refusal string, err error) {
	return replyAt(b, 0, 0)
}

func replyAt(b []byte, at, depth int) (int, string, error) {
	if at >= len(b) {
		return 0, "", nil
	}
	end := bytes.Index(b[at:], []byte("\r\n"))
	if end < 0 {
		if len(b)-at > 64<<10 {
			return 0, "", errNotReply // no header line is this long
		}
		return 0, "", nil
	}
	if end == 0 {
		return 0, "", errNotReply // a line without its type
	}
	line, next := b[at+1:at+end], at+end+2
	switch b[at] {
	case '+', ':':
		return next, "", nil
	case '-':
		return next, string(line), nil
	case '$':
		size, err := strconv.Atoi(string(line))
		if err != nil || size < -1 || size > 512<<20 {
			return 0, "", errNotReply
		}
		if size == -1 {
			return next, "", nil
		}
		if len(b) < next+size+2 {
			return 0, "", nil
		}
		if b[next+size] != '\r' || b[next+size+1] != '\n' {
			return 0, "", errNotReply
		}
		return next + size + 2, "", nil
	case '*':
		count, err := strconv.Atoi(string(line))
		if err != nil || count < -1 || depth >= maxReplyDepth {
			return 0, "", errNotReply
		}
		for range count {
			n, _, err := replyAt(b, next, depth+1)
			if err != nil || n == 0 {
				return 0, "", err
			}
			next = n
		}
		return next, "", nil
	}
	return 0, "", errNotReply
}
