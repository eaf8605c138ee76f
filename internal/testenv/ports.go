package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"testing"
)

// RandHex is n random bytes in hex: unique names for schemas, topics,
// prefixes and users.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PickPort finds a free loopback port below Linux's ephemeral range
// (32768-60999): a port the kernel handed out for :0 could be taken by one
// of the test's own outgoing connections before the process meant to bind
// it does (a CI run lost a chaos projector to "address already in use"
// that way).
func PickPort() (int, error) {
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port in 20000-31999")
}

// FreePort is PickPort, failing t when there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
