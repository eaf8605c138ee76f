package redisstore

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

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
