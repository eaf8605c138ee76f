package redisstore_test

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/infra/redisstore"
)

// The reply scanner: whole replies, parts of one, errors, nesting.
func TestReplyLen(t *testing.T) {
	for _, c := range []struct {
		in      string
		n       int
		refusal string
		bad     bool
	}{
		{in: "+OK\r\n", n: 5},
		{in: "+OK\r\n:1\r\n", n: 5},
		{in: "+OK\r", n: 0},
		{in: "-WRONGTYPE no\r\n", n: 15, refusal: "WRONGTYPE no"},
		{in: ":42\r\n", n: 5},
		{in: "$3\r\nabc\r\n", n: 9},
		{in: "$3\r\nab", n: 0},
		{in: "$-1\r\n", n: 5},
		{in: "*2\r\n$1\r\na\r\n:1\r\n", n: 15},
		{in: "*2\r\n$1\r\na\r\n", n: 0},
		{in: "*-1\r\n", n: 5},
		{in: "$3\r\nabcd\r\n", bad: true},
		{in: "?x\r\n", bad: true},
		{in: "\r\n", bad: true},
		{in: "$x\r\n", bad: true},
		{in: strings.Repeat("*1\r\n", 10) + ":1\r\n", bad: true},
	} {
		n, refusal, err := redisstore.ReplyLen([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("%q: %d %q %v, want an error", c.in, n, refusal, err)
			}
			continue
		}
		if err != nil || n != c.n || refusal != c.refusal {
			t.Errorf("%q: %d %q %v, want %d %q", c.in, n, refusal, err, c.n, c.refusal)
		}
	}
}

// Whatever Redis sends, the scanner neither panics nor claims more than it
// was given, and a reply it found is found alone too.
func FuzzReplyLen(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "*1\r\n*1\r\n+x\r\n", "$5\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := redisstore.ReplyLen(b)
		if err != nil {
			return
		}
		if n < 0 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if n > 0 {
			if m, _, err := redisstore.ReplyLen(b[:n]); err != nil || m != n {
				t.Fatalf("the reply alone: %d %v, want %d", m, err, n)
			}
		}
	})
}
