package redisstore

import (
	"fmt"
	"syscall"
)

// MembersKey exposes the members hash key to the tests.
func (s *Store) MembersKey(conv string) string { return s.membersKey(conv) }

// LocalAddr is the local address of l's connection ("" when it has none),
// for tests that find it in CLIENT LIST.
func (l *Late) LocalAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return ""
	}
	sa, err := syscall.Getsockname(l.conn.fd)
	if err != nil {
		return ""
	}
	if a, ok := sa.(*syscall.SockaddrInet4); ok {
		return fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
	}
	return ""
}

// ReplyLen exposes the RESP reply scanner to the fuzz test.
func ReplyLen(b []byte) (int, string, error) { return replyLen(b) }
