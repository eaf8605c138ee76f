//go:build linux

package redisstore

import (
	"fmt"
	"syscall"
	"time"
)

// LocalAddr is the local address of l's connection ("" when it has none),
// for tests that find it in CLIENT LIST.
func (l *Late) LocalAddr() string {
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

// SetLateTimes shortens lateTimeout and lateRetry for a test; the returned
// func restores them.
func SetLateTimes(timeout, retry time.Duration) func() {
	t, r := lateTimeout, lateRetry
	lateTimeout, lateRetry = timeout, retry
	return func() { lateTimeout, lateRetry = t, r }
}
