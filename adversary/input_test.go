//go:build adversary

package adversary

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The input battery: commands with hostile fields, each with the answer
// docs/protocol.md documents for it. The same commands go over the native
// protocol and Socket.IO (as emits with an ack); frame-level damage that
// only one of them can carry has its own list.

// cmdCase is one command and the answers it may get.
type cmdCase struct {
	name    string
	rawType []byte // the JSON of "type" (a quoted string, or hostile JSON)
	typ     string // the command type, for the ledger ("" when not a send)
	data    []byte // raw JSON of data; nil omits it
	want    []string
	msg     string // an error's message must contain this
	// invalidUTF8: the frame is not valid UTF-8. Native: refused whole
	// (bad_request without an id); Socket.IO: bad_request on the ack.
	invalidUTF8 bool
	nativeOnly  bool
	// sent: the body a message.send sent; an ok must carry it unchanged.
	exactBody *string
}

// battery is the context a battery runs in.
type battery struct {
	conv      string // a shared group the hostile user is a member of
	nonMember string // a real conversation it is not a member of
	foreign   string // a message in conv sent by someone else
	member    string // a user already a member of conv
	tag       string // makes client_msg_ids and titles unique per run of the battery
}

const ok, badReq, tooLarge, notFound, forbidden, conflict = "ok", "bad_request", "too_large", "not_found", "forbidden", "conflict"

// obj builds a JSON object from alternating keys and raw JSON values.
func obj(kv ...string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(quote(kv[i]))
		b.WriteByte(':')
		b.WriteString(kv[i+1])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// js is the JSON of a Go value (strings: valid UTF-8 only, escaped by
// encoding/json).
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// unicodeBodies are valid bodies of every Unicode class; each must be acked,
// stored and delivered byte for byte.
func unicodeBodies() [][2]string {
	var c0, c1, ascii strings.Builder
	for r := rune(1); r < 0x20; r++ {
		c0.WriteRune(r)
	}
	c0.WriteRune(0x7f)
	for r := rune(0x80); r < 0xa0; r++ {
		c1.WriteRune(r)
	}
	for r := rune(0x20); r < 0x7f; r++ {
		ascii.WriteRune(r)
	}
	return [][2]string{
		{"ascii", ascii.String()},
		{"latin1", "café naïve ñ ü ß Ø ¿¡ «»"},
		{"combining", "e\u0301 a\u0308 n\u0303 Z" + strings.Repeat("\u0336\u0301", 300)},
		{"rtl-bidi", "مرحبا שלום \u202eevil\u202c \u2066iso\u2069 \u200f\u061c"},
		{"cjk", "漢字 かな カナ 한국어 𠀀𪚥"},
		{"emoji-zwj", "👩‍👩‍👧‍👦 🇫🇷 👍🏽 1️⃣ 🏳️‍🌈"},
		{"astral", "\U0001D11E \U0001F600 \U00010000 \U0010FFFD"},
		{"private-use", "\ue000\uf8ff\U000F0000\U00100000"},
		{"noncharacters", "\ufffe\uffff\ufdd0\ufdef\U0001FFFE\U0010FFFF"},
		{"bom", "\ufeffhello"},
		{"separators", "a\u2028b\u2029c\u0085d"},
		{"zero-width", "\u200b\u200c\u200d\u2060\u180e"},
		{"c0-controls", c0.String()},
		{"c1-controls", c1.String()},
		{"replacement", "\ufffd"},
		{"whitespace-only", " \t\n\r\v\f"},
		{"html", `<script>alert(1)</script> &amp; "'` + "`"},
		{"sql", "'; DROP TABLE messages; --"},
		{"json-text", `{"id":1,"type":"ok"} \u0000 \\u0000`},
		{"max-ascii", strings.Repeat("a", 8192)},
		{"max-4-byte", strings.Repeat("😀", 2048)},
		{"max-3-byte", strings.Repeat("€", 2730) + "ab"},
		{"max-controls", strings.Repeat("\x01", 8192)},
		{"max-combining", "a" + strings.Repeat("\u0301", 4095) + "b"},
	}
}

// commandCases is the battery of commands, for one run.
func commandCases(b battery) []cmdCase {
	var cs []cmdCase
	n := 0
	cmid := func() string { n++; return js(fmt.Sprintf("%s-%03d", b.tag, n)) }
	conv := js(b.conv)
	add := func(name, typ string, data []byte, want []string, msg string) {
		cs = append(cs, cmdCase{name: name, rawType: quote(typ), typ: typ, data: data, want: want, msg: msg})
	}
	one := func(s string) []string { return []string{s} }
	send := func(name string, body string, want []string, msg string) {
		c := cmdCase{name: name, rawType: quote("message.send"), typ: "message.send",
			data: obj("conversation_id", conv, "client_msg_id", cmid(), "body", js(body)), want: want, msg: msg}
		if slices.Equal(want, []string{ok}) {
			c.exactBody = &body
		}
		cs = append(cs, c)
	}
	// Every Unicode class, at the maximum size too.
	for _, u := range unicodeBodies() {
		send("body "+u[0], u[1], one(ok), "")
	}
	// One past the maximum, empty, U+0000.
	send("body 8193 bytes", strings.Repeat("a", 8193), one(tooLarge), "8192")
	send("body 8190 bytes + a 4-byte char", strings.Repeat("a", 8190)+"😀", one(tooLarge), "8192")
	send("body empty", "", one(badReq), "body")
	send("body with U+0000", "a\x00b", one(badReq), "U+0000")
	send("body U+0000 alone", "\x00", one(badReq), "U+0000")
	send("body 8191 bytes + U+0000", strings.Repeat("a", 8191)+"\x00", one(badReq), "U+0000")
	for _, v := range []string{`42`, `["x"]`, `{"a":1}`, `true`, `1e999`} {
		add("body as "+v, "message.send", obj("conversation_id", conv, "client_msg_id", cmid(), "body", v), one(badReq), "body")
	}
	// Lone surrogates as JSON escapes: refused, or stored as U+FFFD (the
	// ack says which); a valid pair is one astral character.
	for _, s := range []string{`a\ud800b`, `\udfff`, `\ud800\ud800`, `\udc00\ud800`, `x\ud83d`, `\ud83d x`} {
		add("body lone surrogate "+s, "message.send", obj("conversation_id", conv, "client_msg_id", cmid(), "body", `"`+s+`"`), []string{ok, badReq}, "")
	}
	pair := "x😀y"
	cs = append(cs, cmdCase{name: "body surrogate pair escape", rawType: quote("message.send"), typ: "message.send",
		data: obj("conversation_id", conv, "client_msg_id", cmid(), "body", `"x\ud83d\ude00y"`), want: one(ok), exactBody: &pair})
	// Invalid UTF-8 bytes (not escapes) in the body.
	for _, bad := range []string{"\xff", "\xfe\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80", "\xf8\x88\x80\x80\x80"} {
		cs = append(cs, cmdCase{name: fmt.Sprintf("body invalid UTF-8 %q", bad), rawType: quote("message.send"), typ: "message.send",
			data: obj("conversation_id", conv, "client_msg_id", cmid(), "body", `"ok`+bad+`ok"`), want: one(badReq), msg: "UTF-8", invalidUTF8: true})
	}
	// client_msg_id.
	// 64 characters of 4 bytes each (the tag keeps it unique per run).
	add("client_msg_id 64 characters, 256 bytes", "message.send", obj("conversation_id", conv,
		"client_msg_id", js(b.tag+strings.Repeat("🙂", 64-len([]rune(b.tag)))), "body", js("long id")), one(ok), "")
	for _, v := range []struct {
		name, cmid string
		want       string
		msg        string
	}{
		{"client_msg_id 65 chars", js(strings.Repeat("k", 65)), badReq, "client_msg_id"},
		{"client_msg_id 65 emoji", js(strings.Repeat("🙂", 65)), badReq, "client_msg_id"},
		{"client_msg_id empty", `""`, badReq, "client_msg_id"},
		{"client_msg_id U+0000", js("x\x00" + b.tag), badReq, "U+0000"},
		{"client_msg_id a number", `5`, badReq, "client_msg_id"},
		{"client_msg_id controls", js("\x01\x1f\x7f-" + b.tag), ok, ""},
	} {
		add(v.name, "message.send", obj("conversation_id", conv, "client_msg_id", v.cmid, "body", js("x")), one(v.want), v.msg)
	}
	// conversation_id.
	for _, v := range []struct{ name, id, want string }{
		{"conversation_id 64 chars, unknown", js("c_" + strings.Repeat("0", 62)), notFound},
		{"conversation_id 65 chars", js("c_" + strings.Repeat("0", 63)), badReq},
		{"conversation_id U+0000", js("c_\x00"), badReq},
		{"conversation_id with a space", js("c_ x"), badReq},
		{"conversation_id path", js("../../etc/passwd"), badReq},
		{"conversation_id empty", `""`, badReq},
		{"conversation_id a number", `123`, badReq},
		{"conversation_id an object", `{"$ne":null}`, badReq},
		{"conversation_id of a non-member", js(b.nonMember), notFound},
	} {
		add("send: "+v.name, "message.send", obj("conversation_id", v.id, "client_msg_id", cmid(), "body", js("x")), one(v.want), "")
	}
	// conversation.create.
	members := func(n int) string {
		ms := make([]string, n)
		for i := range ms {
			ms[i] = fmt.Sprintf("%s-m%04d", b.tag, i)
		}
		return js(ms)
	}
	add("create title 200 bytes", "conversation.create", obj("kind", `"group"`, "title", js(strings.Repeat("t", 200)), "members", `[]`), one(ok), "")
	add("create title 50 emoji", "conversation.create", obj("kind", `"group"`, "title", js(strings.Repeat("🎉", 50)), "members", `[]`), one(ok), "")
	add("create title 201 bytes", "conversation.create", obj("kind", `"group"`, "title", js(strings.Repeat("t", 201)), "members", `[]`), one(badReq), "title")
	add("create title U+0000", "conversation.create", obj("kind", `"group"`, "title", js("a\x00"), "members", `[]`), one(badReq), "U+0000")
	add("create kind channel", "conversation.create", obj("kind", `"channel"`, "members", `[]`), one(badReq), "kind")
	add("create direct with two others", "conversation.create", obj("kind", `"direct"`, "members", `["a1","a2"]`), one(badReq), "")
	add("create 1000 members", "conversation.create", obj("kind", `"group"`, "title", js("big "+b.tag), "members", members(999)), one(ok), "")
	add("create 1001 members", "conversation.create", obj("kind", `"group"`, "members", members(1001)), one(badReq), "members")
	add("create member with a space", "conversation.create", obj("kind", `"group"`, "members", `["bad user"]`), one(badReq), "members[0]")
	add("create member U+0000", "conversation.create", obj("kind", `"group"`, "members", js([]string{"x\x00"})), one(badReq), "members[0]")
	add("create members a string", "conversation.create", obj("kind", `"group"`, "members", `"alice"`), one(badReq), "members")
	add("create members nested", "conversation.create", obj("kind", `"group"`, "members", `[["a"]]`), one(badReq), "")
	// read.
	for _, v := range []struct{ seq, want string }{
		{"-1", badReq}, {"1.5", badReq}, {"1e30", badReq}, {`"5"`, badReq}, {"9223372036854775808", badReq},
		{"-9223372036854775809", badReq}, {"9223372036854775807", ok}, {"0", ok}, {"null", ok},
	} {
		add("read seq "+v.seq, "read", obj("conversation_id", conv, "seq", v.seq), one(v.want), "")
	}
	// history.
	for _, v := range []struct{ name, kv, want string }{
		{"limit 0", `"limit":0`, badReq}, {"limit -1", `"limit":-1`, badReq}, {"limit 201", `"limit":201`, badReq},
		{"limit 1.5", `"limit":1.5`, badReq}, {"limit 1e9", `"limit":1e9`, badReq}, {`limit "50"`, `"limit":"50"`, badReq},
		{"limit 99999999999999999999", `"limit":99999999999999999999`, badReq},
		{"limit 200", `"limit":200`, ok}, {"limit 1", `"limit":1`, ok},
		{"before_seq 0", `"before_seq":0`, badReq}, {"before_seq -5", `"before_seq":-5`, badReq},
		{"before_seq max int64", `"before_seq":9223372036854775807`, ok},
		{"after_seq -1", `"after_seq":-1`, badReq}, {"before and after", `"before_seq":5,"after_seq":1`, badReq},
		{"after_seq max int64", `"after_seq":9223372036854775807`, ok},
	} {
		add("history "+v.name, "history", []byte(`{"conversation_id":`+conv+`,`+v.kv+`}`), one(v.want), "")
	}
	add("history of a non-member", "history", obj("conversation_id", js(b.nonMember)), one(notFound), "")
	// sync.
	for _, v := range []struct{ name, positions, want string }{
		{"position -1", `{` + conv + `:-1}`, badReq}, {"position 1.5", `{` + conv + `:1.5}`, badReq},
		{"position 1e400", `{` + conv + `:1e400}`, badReq}, {`position "0"`, `{` + conv + `:"0"}`, badReq},
		{"key with a space", `{"bad key":0}`, badReq}, {"key U+0000", `{"c_\u0000":0}`, badReq},
		{"positions an array", `[]`, badReq}, {"positions a string", `"x"`, badReq},
		{"position max int64", `{` + conv + `:9223372036854775807}`, ok}, {"positions null", `null`, ok}, {"positions empty", `{}`, ok},
		{"unknown conversation", `{"c_` + strings.Repeat("f", 62) + `":0}`, ok},
		{"non-member conversation", `{` + js(b.nonMember) + `:0}`, ok},
	} {
		add("sync "+v.name, "sync", []byte(`{"positions":`+v.positions+`}`), one(v.want), "")
	}
	// typing, edit, delete, add_member, leave.
	add("typing", "typing", obj("conversation_id", conv), one(ok), "")
	add("typing without conversation", "typing", obj(), one(badReq), "")
	add("typing in a non-member conversation", "typing", obj("conversation_id", js(b.nonMember)), one(notFound), "")
	add("edit an unknown message", "message.edit", obj("conversation_id", conv, "message_id", js("m_"+strings.Repeat("0", 32)), "body", js("x")), one(notFound), "")
	add("edit body U+0000", "message.edit", obj("conversation_id", conv, "message_id", js("m_"+strings.Repeat("0", 32)), "body", js("\x00")), one(badReq), "U+0000")
	add("edit body 8193 bytes", "message.edit", obj("conversation_id", conv, "message_id", js("m_"+strings.Repeat("0", 32)), "body", js(strings.Repeat("e", 8193))), one(tooLarge), "")
	if b.foreign != "" {
		add("edit another's message", "message.edit", obj("conversation_id", conv, "message_id", js(b.foreign), "body", js("mine now")), one(forbidden), "")
		add("delete another's message", "message.delete", obj("conversation_id", conv, "message_id", js(b.foreign)), one(forbidden), "")
	}
	add("delete an unknown message", "message.delete", obj("conversation_id", conv, "message_id", js("m_"+strings.Repeat("1", 32))), one(notFound), "")
	add("add_member a bad user id", "conversation.add_member", obj("conversation_id", conv, "user_id", js("bad user")), one(badReq), "")
	add("add_member U+0000", "conversation.add_member", obj("conversation_id", conv, "user_id", js("u\x00")), one(badReq), "")
	add("add_member an existing member", "conversation.add_member", obj("conversation_id", conv, "user_id", js(b.member)), one(conflict), "")
	add("add_member to a non-member conversation", "conversation.add_member", obj("conversation_id", js(b.nonMember), "user_id", js("zed")), one(notFound), "")
	add("leave a non-member conversation", "conversation.leave", obj("conversation_id", js(b.nonMember)), one(notFound), "")
	add("leave without conversation", "conversation.leave", obj(), one(badReq), "")
	// conversation.list: page size and cursor.
	b64 := func(s string) string { return js(base64.RawURLEncoding.EncodeToString([]byte(s))) }
	for _, v := range []struct{ name, kv, want string }{
		{"limit 0", `"limit":0`, badReq}, {"limit 201", `"limit":201`, badReq}, {"limit -1", `"limit":-1`, badReq},
		{"limit 1.5", `"limit":1.5`, badReq}, {`limit "5"`, `"limit":"5"`, badReq}, {"limit 200", `"limit":200`, ok},
		{"limit 1", `"limit":1`, ok}, {"cursor garbage", `"cursor":"garbage!"`, badReq},
		{"cursor of 257 chars", `"cursor":` + js(strings.Repeat("A", 257)), badReq}, {"cursor a number", `"cursor":123`, badReq},
		{"cursor U+0000", `"cursor":"\u0000"`, badReq}, {"cursor empty id", `"cursor":` + b64("1."), badReq},
		{"cursor id U+0000", `"cursor":` + b64("1.c_\x00"), badReq}, {"cursor at 0", `"cursor":` + b64("0.c_x"), ok},
		{"cursor at min int64", `"cursor":` + b64("-9223372036854775808.c_x"), "ok|bad_request"},
		{"cursor at max int64", `"cursor":` + b64("9223372036854775807.c_x"), "ok|bad_request"},
		{"cursor before year 1", `"cursor":` + b64("-62135596800000001.c_x"), "ok|bad_request"},
	} {
		add("conversation.list "+v.name, "conversation.list", []byte(`{`+v.kv+`}`), strings.Split(v.want, "|"), "")
	}
	// Unknown types.
	for _, t := range []string{"no.such", "", "MESSAGE.SEND", "message.send ", " message.send", "__proto__", "constructor",
		"hasOwnProperty", "message.send\x00", "ok", "error", strings.Repeat("t", 1000), "../../admin", "message.react", "search"} {
		add("type "+clip(fmt.Sprintf("%q", t)), t, obj(), one(badReq), "")
	}
	cs = append(cs, cmdCase{name: "type a number", rawType: []byte("42"), data: obj(), want: one(badReq)})
	cs = append(cs, cmdCase{name: "type an object", rawType: []byte(`{"a":1}`), data: obj(), want: one(badReq), nativeOnly: true})
	cs = append(cs, cmdCase{name: "type null", rawType: []byte(`null`), data: obj(), want: one(badReq), nativeOnly: true})
	// Data of the wrong shape.
	for _, d := range []string{`[]`, `42`, `"x"`, `true`, `-1e999`} {
		add("data "+d, "conversation.list", []byte(d), one(badReq), "data")
	}
	add("data null", "conversation.list", []byte(`null`), one(ok), "")
	add("data omitted", "conversation.list", nil, one(ok), "")
	// Nesting: within encoding/json's limit of 10000, and past it.
	add("data 9000 nested arrays", "conversation.list", []byte(strings.Repeat("[", 9000)+strings.Repeat("]", 9000)), one(badReq), "")
	add("field 3000 nested objects", "message.send", []byte(`{"conversation_id":`+strings.Repeat(`{"a":`, 3000)+"1"+strings.Repeat("}", 3000)+`}`), one(badReq), "")
	add("unknown field 9000 deep", "message.send", []byte(`{"x":`+strings.Repeat("[", 9000)+strings.Repeat("]", 9000)+`,"conversation_id":`+conv+`,"client_msg_id":`+cmid()+`,"body":"deep"}`), one(ok), "")
	// Odd but valid JSON: extra fields, duplicate keys, case-folded keys.
	add("extra fields", "message.send", obj("conversation_id", conv, "client_msg_id", cmid(), "body", js("extra"), "__proto__", `{"admin":true}`, "sender_id", `"root"`), one(ok), "")
	add("duplicate keys", "message.send", []byte(`{"conversation_id":`+conv+`,"client_msg_id":`+cmid()+`,"body":"first","body":"second"}`), one(ok), "")
	return cs
}

// frameCase is a native frame with damage below the command level.
type frameCase struct {
	name   string
	frame  func(id int64) []byte
	binary bool
	id     bool // the reply carries the frame's id (else no id)
	want   string
	msg    string
}

func nativeFrameCases() []frameCase {
	raw := func(s string) func(int64) []byte { return func(int64) []byte { return []byte(s) } }
	var cs []frameCase
	for _, id := range []string{"0", "-1", "1.5", "1e3", `"7"`, "true", "null", "[]", "{}", "9223372036854775808", "1e400", "-0"} {
		cs = append(cs, frameCase{name: "id " + id, frame: raw(`{"id":` + id + `,"type":"conversation.list"}`), want: badReq, msg: "id"})
	}
	cs = append(cs,
		frameCase{name: "id max int64", frame: raw(`{"id":9223372036854775807,"type":"conversation.list"}`), want: ok},
		frameCase{name: "no id", frame: raw(`{"type":"conversation.list"}`), want: badReq, msg: "id"},
		frameCase{name: "no type", frame: func(id int64) []byte { return []byte(`{"id":` + strconv.FormatInt(id, 10) + `}`) }, id: true, want: badReq, msg: "type"},
	)
	for _, f := range []string{"null", "[]", "42", `"str"`, "{}", "", " ", "{", "}{", `{"id":1,"type":"conversation.list"} x`,
		"\ufeff" + `{"id":1,"type":"conversation.list"}`, strings.Repeat("[", 30000), strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)} {
		cs = append(cs, frameCase{name: "frame " + clip(fmt.Sprintf("%q", f)), frame: raw(f), want: badReq})
	}
	for _, ctl := range []string{"\x00", "\x01", "\n", "\x1f"} {
		cs = append(cs, frameCase{name: fmt.Sprintf("raw %q in a string", ctl),
			frame: raw(`{"id":1,"type":"message.send","data":{"body":"a` + ctl + `b"}}`), want: badReq})
	}
	for _, bad := range []string{"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82"} {
		cs = append(cs,
			frameCase{name: fmt.Sprintf("invalid UTF-8 %q in type", bad), frame: raw(`{"id":1,"type":"conv` + bad + `"}`), want: badReq, msg: "UTF-8"},
			frameCase{name: fmt.Sprintf("invalid UTF-8 %q in a key", bad), frame: raw(`{"id":1,"type":"conversation.list","data":{"` + bad + `":1}}`), want: badReq, msg: "UTF-8"})
	}
	cs = append(cs,
		frameCase{name: "binary frame of noise", frame: raw("\x00\x01\x02\xff\xfe binary"), binary: true, want: badReq, msg: "text"},
		frameCase{name: "binary frame of a valid command", frame: raw(`{"id":1,"type":"conversation.list"}`), binary: true, want: badReq, msg: "text"},
		frameCase{name: "frame of exactly 64 KiB", frame: func(id int64) []byte {
			head := `{"id":` + strconv.FormatInt(id, 10) + `,"type":"conversation.list","data":{},"pad":"`
			return []byte(head + strings.Repeat("p", 64<<10-len(head)-2) + `"}`)
		}, id: true, want: ok},
	)
	return cs
}

// runNativeBattery runs every case on one reading native connection, paced
// under the rate limit, and reports each answer that is not the documented
// one. The connection must stay open throughout.
func (r *run) runNativeBattery(node *chatd, user string, b battery) {
	name := fmt.Sprintf("native battery on %s (%s)", node.name, user)
	c, err := dialNative(r.ctx, node, name, r.token(user), r.led, true)
	if err != nil {
		r.fail(name, "dial: %v", err)
		return
	}
	defer c.close()
	for _, cs := range commandCases(b) {
		if !c.alive() {
			r.fail(name, "connection closed before %q: %v", cs.name, c.closeEr)
			return
		}
		rep, id, err := r.paced(c, cs.rawType, cs.typ, cs.data)
		r.count("native", cs.name, rep.code)
		switch {
		case err != nil:
			r.fail(name, "%s: %v", cs.name, err)
		case cs.invalidUTF8:
			if rep.hasID || rep.code != badReq || !strings.Contains(rep.msg, "UTF-8") {
				r.fail(name, "%s: got %s (has id %v) %q, want bad_request without id naming UTF-8", cs.name, rep.code, rep.hasID, rep.msg)
			}
		default:
			r.checkAnswer("native", name, cs, rep, id)
		}
	}
	for _, fc := range nativeFrameCases() {
		id := c.next.Add(1)
		typ := websocket.TextMessage
		if fc.binary {
			typ = websocket.BinaryMessage
		}
		time.Sleep(r.prof.pace)
		if err := c.write(typ, fc.frame(id)); err != nil {
			r.fail(name, "%s: write: %v", fc.name, err)
			return
		}
		rep, err := c.await(20 * time.Second)
		r.count("native", fc.name, rep.code)
		switch {
		case err != nil:
			r.fail(name, "%s: %v", fc.name, err)
		case rep.code != fc.want || !strings.Contains(rep.msg, fc.msg):
			r.fail(name, "%s: got %s %q, want %s naming %q", fc.name, rep.code, rep.msg, fc.want, fc.msg)
		case fc.id && (!rep.hasID || rep.id != id):
			r.fail(name, "%s: reply id %d (has %v), want %d", fc.name, rep.id, rep.hasID, id)
		case !fc.id && fc.want != ok && rep.hasID:
			r.fail(name, "%s: reply has id %d, but the frame's id cannot be read", fc.name, rep.id)
		case fc.name == "id max int64" && rep.id != 9223372036854775807:
			r.fail(name, "%s: reply id %d", fc.name, rep.id)
		}
	}
	r.afterCost(c, name+": after the battery") // still usable after all of it
	// One byte over 64 KiB: closed with 1009 (its own connection).
	big, err := dialNative(r.ctx, node, name+" (too big)", r.token(user), nil, false)
	if err != nil {
		r.fail(name, "dial for the 64 KiB + 1 frame: %v", err)
		return
	}
	defer big.close()
	head := `{"id":1,"type":"conversation.list","pad":"`
	_ = big.write(websocket.TextMessage, []byte(head+strings.Repeat("p", 64<<10+1-len(head)-2)+`"}`))
	_, closeErr, err := waitClosed(big.ws, 15*time.Second)
	r.count("native", "frame of 64 KiB + 1", fmt.Sprint(closeCode(closeErr)))
	if err != nil || closeCode(closeErr) != 1009 {
		r.fail(name, "frame of 64 KiB + 1 byte: closed with %v (%v), want 1009", closeErr, err)
	}
}

// paced sends one command under the rate limit; a rate_limited answer is
// retried (the battery wants the command's own answer).
func (r *run) paced(c *hconn, rawType []byte, typ string, data []byte) (reply, int64, error) {
	var rep reply
	var id int64
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		time.Sleep(r.prof.pace)
		id, err = c.sendRawType(rawType, typ, data)
		if err != nil {
			return rep, id, err
		}
		rep, err = c.await(20 * time.Second)
		if err != nil || rep.code != "rate_limited" {
			return rep, id, err
		}
		time.Sleep(time.Second)
	}
	return rep, id, err
}

func (r *run) checkAnswer(proto, name string, cs cmdCase, rep reply, id int64) {
	if len(cs.want) > 1 {
		r.countLenient(proto, cs.name, rep.code)
	}
	if !rep.hasID || rep.id != id {
		r.fail(name, "%s: reply id %d (has %v), want %d", cs.name, rep.id, rep.hasID, id)
		return
	}
	if !slices.Contains(cs.want, rep.code) {
		r.fail(name, "%s: got %s %q, want %v", cs.name, rep.code, rep.msg, cs.want)
		return
	}
	if rep.code != ok && cs.msg != "" && !strings.Contains(rep.msg, cs.msg) {
		r.fail(name, "%s: %s message %q does not name %q", cs.name, rep.code, rep.msg, cs.msg)
	}
	if rep.code == ok && cs.exactBody != nil {
		m, err := ackedMessage(rep.data)
		if err != nil || m.Body != *cs.exactBody {
			r.fail(name, "%s: acked body %q (%v), sent %q", cs.name, clip(m.Body), err, clip(*cs.exactBody))
		}
	}
}

// runSioBattery runs the command cases as Socket.IO emits with acks.
func (r *run) runSioBattery(node *chatd, user string, b battery) {
	name := fmt.Sprintf("socket.io battery on %s (%s)", node.name, user)
	c, err := dialSioHostile(r.ctx, node, name, r.token(user), r.led, true)
	if err != nil {
		r.fail(name, "dial: %v", err)
		return
	}
	defer c.close()
	for _, cs := range commandCases(b) {
		if cs.nativeOnly {
			continue
		}
		if !c.alive() {
			r.fail(name, "session closed before %q: %v", cs.name, c.closeEr)
			return
		}
		rep, id, err := r.paced(c, cs.rawType, cs.typ, cs.data)
		r.count("socket.io", cs.name, rep.code)
		if err != nil {
			r.fail(name, "%s: %v", cs.name, err)
			continue
		}
		if cs.invalidUTF8 && disableSioInvalidUTF8 {
			continue
		}
		r.checkAnswer("socket.io", name, cs, rep, id)
	}
	// A binary attachment is refused, the session stays.
	id := c.next.Add(1)
	_ = c.write(websocket.TextMessage, []byte(`451-`+strconv.FormatInt(id, 10)+`["message.send",{"_placeholder":true,"num":0}]`))
	_ = c.write(websocket.BinaryMessage, []byte{0, 1, 2, 3})
	rep, err := c.await(20 * time.Second)
	r.count("socket.io", "binary attachment", rep.code)
	if err != nil || rep.id != id || rep.code != badReq || !strings.Contains(rep.msg, "binary") {
		r.fail(name, "binary attachment: %+v %v, want bad_request naming binary", rep, err)
	}
	// The largest ack id the protocol allows (15 digits) comes back as is.
	big := int64(999999999999999)
	_ = c.write(websocket.TextMessage, []byte(`42`+strconv.FormatInt(big, 10)+`["conversation.list"]`))
	rep, err = c.await(20 * time.Second)
	if err != nil || rep.id != big || rep.code != ok {
		r.fail(name, "ack id %d: %+v %v", big, rep, err)
	}
	// An emit without an ack id runs and gets no ack; the session stays.
	_ = c.write(websocket.TextMessage, []byte(`42["typing",{"conversation_id":`+js(b.conv)+`}]`))
	r.afterCost(c, name+": after the battery")
}

// sioClosingCases are packets the protocol answers by closing the session.
func sioClosingCases() []struct {
	name   string
	frames [][]byte
	binary []bool
} {
	type cs = struct {
		name   string
		frames [][]byte
		binary []bool
	}
	text := func(name string, fs ...string) cs {
		c := cs{name: name}
		for _, f := range fs {
			c.frames = append(c.frames, []byte(f))
			c.binary = append(c.binary, false)
		}
		return c
	}
	return []cs{
		text("engine.io type 9", "9"),
		text("socket.io type 9", "49"),
		text("empty text frame", ""),
		text("reserved event name", `42["connect"]`),
		text("event not an array", `42{"a":1}`),
		text("event an empty array", `42[]`),
		text("event name an object", `42[{"x":1}]`),
		text("16-digit ack id", `421234567890123456["conversation.list"]`),
		text("invalid JSON", `42["conversation.list",`),
		text("raw U+0000 in a string", "42[\"message.send\",{\"body\":\"a\x00b\"}]"),
		text("20000 nested arrays", `42["conversation.list",`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`]`),
		text("client ping", "2"),
		text("ack without id", `43["x"]`),
		text("CONNECT_ERROR from a client", `44{"message":"x"}`),
		text("attachment announced, text follows", `451-["message.send",{"_placeholder":true,"num":0}]`, `42["conversation.list"]`),
		{name: "placeholder past the attachments", frames: [][]byte{[]byte(`451-["x",{"_placeholder":true,"num":5}]`), {1, 2}}, binary: []bool{false, true}},
		{name: "binary frame nobody announced", frames: [][]byte{{0xde, 0xad}}, binary: []bool{true}},
		text("message of 64 KiB + 1", `42["conversation.list",{"pad":"`+strings.Repeat("p", 64<<10+1-len(`42["conversation.list",{"pad":""}]`))+`"}]`),
	}
}

// runSioClosing sends each closing case on its own authenticated session
// and checks that the server ends it (bounded).
func (r *run) runSioClosing(node *chatd, user string) {
	name := fmt.Sprintf("socket.io malformed packets on %s", node.name)
	for _, cs := range sioClosingCases() {
		c, err := dialSioHostile(r.ctx, node, name, r.token(user), nil, false)
		if err != nil {
			r.fail(name, "%s: dial: %v", cs.name, err)
			continue
		}
		for i, f := range cs.frames {
			typ := websocket.TextMessage
			if cs.binary[i] {
				typ = websocket.BinaryMessage
			}
			_ = c.write(typ, f)
		}
		_, _, err = waitClosed(c.ws, 15*time.Second)
		r.count("socket.io", cs.name, closedOutcome(err))
		if err != nil {
			r.fail(name, "%s: the session was not closed: %v", cs.name, err)
		}
		c.close()
		time.Sleep(r.prof.pace)
	}
}

func closedOutcome(err error) string {
	if err != nil {
		return "open"
	}
	return "closed"
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
