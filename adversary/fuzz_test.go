//go:build adversary

package adversary

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// fuzzer writes random commands: known and unknown types, fields that are
// right, wrong or absent, and values of every JSON kind drawn from hostile
// pools (every Unicode class, U+0000, lone surrogate escapes, huge, negative
// and fractional numbers, deep nesting). Sometimes it damages the frame with
// invalid UTF-8.
type fuzzer struct {
	rnd   *rand.Rand
	convs []string // conversations worth hitting (the fuzzing user is a member of some)
	users []string
}

var fuzzTypes = []string{"conversation.create", "conversation.add_member", "conversation.leave", "conversation.list",
	"message.send", "message.edit", "message.delete", "typing", "read", "sync", "history",
	"message.react", "search", "presence.query", "thread", "no.such", "", "sync ", "toString"}

var fuzzKeys = []string{"conversation_id", "client_msg_id", "body", "title", "kind", "members", "user_id", "message_id",
	"seq", "before_seq", "after_seq", "limit", "positions", "emoji", "query", "reply_to", "__proto__", "id", "type", ""}

func (f *fuzzer) pick(xs []string) string { return xs[f.rnd.IntN(len(xs))] }

// str is a JSON string literal from a hostile pool.
func (f *fuzzer) str() string {
	switch f.rnd.IntN(12) {
	case 0:
		return js(f.pick(f.convs))
	case 1:
		return js(f.pick(f.users))
	case 2:
		u := unicodeBodies()
		s := []rune(u[f.rnd.IntN(len(u))][1])
		return js(string(s[:f.rnd.IntN(len(s))+1]))
	case 3:
		return `"` + f.pick([]string{`\u0000`, `a\u0000`, `\ud800`, `\udfff\ud800`, `\ud83d\ude00`, `\u2028`, `\\`, `\"`, `\/`, `\b\f\n\r\t`}) + `"`
	case 4:
		return js(strings.Repeat(f.pick([]string{"a", "é", "😀", "\x01", "\u0301"}), f.rnd.IntN(3000)))
	case 5:
		return js(strings.Repeat("x", 8190+f.rnd.IntN(4)))
	case 6:
		return `""`
	case 7:
		return js("m_" + strconv.FormatUint(f.rnd.Uint64(), 16))
	case 8:
		return js(fmt.Sprintf("fz-%d", f.rnd.IntN(1000)))
	default:
		var b strings.Builder
		for range f.rnd.IntN(20) + 1 {
			b.WriteRune(rune(f.rnd.IntN(0x110000)))
		}
		return js(b.String()) // surrogate code points come out as U+FFFD
	}
}

func (f *fuzzer) num() string {
	return f.pick([]string{"0", "-1", "1", "1.5", "-0.0", "1e308", "1e400", "-1e400", "9223372036854775807", "9223372036854775808",
		"-9223372036854775809", "200", "201", "50", "0.0000001", "1E2", "123456789012345678901234567890",
		strconv.FormatInt(f.rnd.Int64N(1000), 10)})
}

// value is a random JSON value, at most depth deep.
func (f *fuzzer) value(depth int) string {
	k := f.rnd.IntN(10)
	if depth <= 0 && k >= 7 {
		k = f.rnd.IntN(7)
	}
	switch k {
	case 0, 1, 2:
		return f.str()
	case 3, 4:
		return f.num()
	case 5:
		return f.pick([]string{"true", "false"})
	case 6:
		return "null"
	case 7:
		var parts []string
		for range f.rnd.IntN(4) {
			parts = append(parts, f.value(depth-1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case 8:
		return string(f.object(depth - 1))
	default:
		n := f.rnd.IntN(200)
		return strings.Repeat("[", n) + f.value(0) + strings.Repeat("]", n)
	}
}

func (f *fuzzer) object(depth int) []byte {
	var kv []string
	for range f.rnd.IntN(6) {
		key := f.pick(fuzzKeys)
		var v string
		switch {
		case key == "positions" && f.rnd.IntN(2) == 0:
			v = `{` + js(f.pick(f.convs)) + `:` + f.num() + `}`
		case key == "members" && f.rnd.IntN(2) == 0:
			v = `[` + js(f.pick(f.users)) + `]`
		default:
			v = f.value(depth)
		}
		kv = append(kv, key, v)
	}
	return obj(kv...)
}

// command returns a random command's type and data; valid-looking sends
// are common so that hostile bodies reach the log and the members.
func (f *fuzzer) command() (string, []byte) {
	if f.rnd.IntN(3) == 0 {
		return "message.send", obj("conversation_id", js(f.pick(f.convs)), "client_msg_id",
			js(fmt.Sprintf("fz-%x", f.rnd.Uint64())), "body", f.str())
	}
	return f.pick(fuzzTypes), f.object(3)
}

// damage puts an invalid UTF-8 byte somewhere in the frame.
func (f *fuzzer) damage(b []byte) []byte {
	i := f.rnd.IntN(len(b) + 1)
	bad := f.pick([]string{"\xff", "\xc0", "\xed\xa0\x80", "\x80"})
	return slices.Concat(b[:i], []byte(bad), b[i:])
}

// runFuzz sends n random frames on one reading connection (paced, but
// faster than the rate limit), then checks that every frame got exactly one
// answer, none of them internal, and that the connection is still open.
func (r *run) runFuzz(node *chatd, user string, sio bool, n int, seed uint64) {
	proto := "native"
	if sio {
		proto = "socket.io"
	}
	name := fmt.Sprintf("%s fuzzer on %s (%s)", proto, node.name, user)
	var c *hconn
	var err error
	if sio {
		c, err = dialSioHostile(r.ctx, node, name, r.token(user), r.led, true)
	} else {
		c, err = dialNative(r.ctx, node, name, r.token(user), r.led, true)
	}
	if err != nil {
		r.fail(name, "dial: %v", err)
		return
	}
	defer c.close()
	f := &fuzzer{rnd: rand.New(rand.NewPCG(seed, 11)), convs: r.fuzzConvs(), users: r.fuzzUsers()}
	sent := map[int64]string{}
	damaged := 0
	for i := 0; i < n && c.alive(); i++ {
		typ, data := f.command()
		id := c.next.Add(1)
		c.mu.Lock()
		c.types[id] = typ
		c.mu.Unlock()
		frame := c.frame(id, quote(typ), data)
		if len(frame) > 60<<10 {
			frame = c.frame(id, quote(typ), obj())
		}
		if !sio && f.rnd.IntN(20) == 0 {
			frame = f.damage(frame)
			damaged++
		}
		sent[id] = fmt.Sprintf("%.300s", frame)
		if err := c.write(websocket.TextMessage, frame); err != nil {
			r.fail(name, "write frame %d: %v", i, err)
			return
		}
		time.Sleep(r.prof.fuzzPace)
	}
	answered := map[int64]bool{}
	noID := 0
	for got := 0; got < len(sent); got++ {
		rep, err := c.await(30 * time.Second)
		if err != nil {
			r.fail(name, "%d of %d frames answered: %v", got, len(sent), err)
			break
		}
		r.count(proto, "fuzz", rep.code)
		switch {
		case !rep.hasID:
			noID++
			if rep.code != badReq {
				r.fail(name, "a reply without id: %s %q", rep.code, rep.msg)
			}
		case sent[rep.id] == "":
			r.fail(name, "a reply to id %d, never sent", rep.id)
		case answered[rep.id]:
			r.fail(name, "a second reply to id %d: %s", rep.id, rep.code)
		default:
			answered[rep.id] = true
			if !slices.Contains([]string{ok, badReq, notFound, forbidden, tooLarge, conflict, "rate_limited"}, rep.code) {
				r.fail(name, "frame %s: got %s %q", sent[rep.id], rep.code, rep.msg)
			}
		}
	}
	if noID > damaged {
		r.fail(name, "%d replies without id for %d damaged frames", noID, damaged)
	}
	r.afterCost(c, name+": after fuzzing")
}
