//go:build adversary

package adversary

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/auth"
)

// runFlood writes n commands back to back without waiting, on a connection
// that reads: every one must get exactly one answer (ok, or rate_limited
// past the burst), and the connection must stay open. Malformed frames are
// answered too (bad_request), one each.
func (r *run) runFlood(node *chatd, user string, sio bool, n int) {
	proto := "native"
	if sio {
		proto = "socket.io"
	}
	if !floodPastSendQueue && !sio { // a session's queue holds 4 x CHAT_SEND_QUEUE packets
		n = min(n, floodCap)
	}
	name := fmt.Sprintf("%s flood of %d on %s (%s)", proto, n, node.name, user)
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
	conv := r.shared[0]
	ids := map[int64]bool{}
	for i := range n {
		var typ string
		var data []byte
		switch i % 4 {
		case 0:
			typ, data = "conversation.list", nil
		case 1:
			typ, data = "typing", obj("conversation_id", js(conv))
		case 2:
			typ, data = "history", obj("conversation_id", js(conv), "limit", "1")
		default:
			typ, data = "read", obj("conversation_id", js(conv), "seq", "1")
		}
		id, err := c.send(typ, data)
		if err != nil {
			r.fail(name, "write %d: %v", i, err)
			return
		}
		ids[id] = true
	}
	codes := map[string]int{}
	for got := 0; got < n; got++ {
		rep, err := c.await(60 * time.Second)
		if err != nil {
			r.fail(name, "%d of %d answered: %v", got, n, err)
			return
		}
		codes[rep.code]++
		r.count(proto, "flood", rep.code)
		if !rep.hasID || !ids[rep.id] {
			r.fail(name, "an answer to id %d (has %v) not sent or answered twice: %s", rep.id, rep.hasID, rep.code)
		}
		delete(ids, rep.id)
		if rep.code != ok && rep.code != "rate_limited" {
			r.fail(name, "got %s %q", rep.code, rep.msg)
		}
	}
	if codes["rate_limited"] == 0 {
		r.fail(name, "%d commands at once and none rate_limited (burst %d): %v", n, 40, codes)
	}
	if !sio {
		// Malformed frames are refused one by one, without the rate limit.
		for range n {
			if err := c.write(websocket.TextMessage, []byte("{")); err != nil {
				r.fail(name, "write a malformed frame: %v", err)
				return
			}
		}
		for got := 0; got < n; got++ {
			rep, err := c.await(60 * time.Second)
			if err != nil {
				r.fail(name, "%d of %d malformed frames answered: %v", got, n, err)
				return
			}
			r.count(proto, "malformed flood", rep.code)
			if rep.hasID || rep.code != badReq {
				r.fail(name, "malformed frame answered %s (id %v)", rep.code, rep.hasID)
				break
			}
		}
	}
	time.Sleep(2 * time.Second) // the bucket refills
	if rep, err := c.request("conversation.list", nil); err != nil || rep.code != ok {
		r.fail(name, "conversation.list after the flood: %s %v", rep.code, err)
	}
}

// hog is a client that asks for a lot and never reads: the node must cut it
// off (send queue bounded in bytes) instead of holding what it asked for.
type hog struct {
	name string
	ws   *websocket.Conn
}

// startHogs opens the never-reading clients of a node: native ones that ask
// for 40 pages of 200 big messages, one that resumes every conversation from
// 0, and a Socket.IO one that asks for the pages too.
func (r *run) startHogs(node *chatd, idx int) []hog {
	var hogs []hog
	pages := func(c *hconn) {
		for range 40 {
			if _, err := c.send("history", obj("conversation_id", js(r.big), "limit", "200")); err != nil {
				return // cut off already
			}
		}
	}
	for i := range r.prof.hogs {
		user := fmt.Sprintf("hog-%d-%d", idx, i)
		name := fmt.Sprintf("native never-reader %s on %s", user, node.name)
		c, err := dialNative(r.ctx, node, name, r.token(user), nil, false)
		if err != nil {
			r.fail(name, "dial: %v", err)
			continue
		}
		pages(c)
		hogs = append(hogs, hog{name: name, ws: c.ws})
	}
	{
		user := fmt.Sprintf("hog-%d-sync", idx)
		name := fmt.Sprintf("native never-reader %s resuming from 0 on %s", user, node.name)
		if c, err := dialNative(r.ctx, node, name, r.token(user), nil, false); err != nil {
			r.fail(name, "dial: %v", err)
		} else {
			pos := map[string]int64{r.big: 0}
			for _, g := range r.shared {
				pos[g] = 0
			}
			for range 3 {
				_, _ = c.send("sync", []byte(`{"positions":`+js(pos)+`}`))
			}
			hogs = append(hogs, hog{name: name, ws: c.ws})
		}
	}
	{
		user := fmt.Sprintf("hog-%d-sio", idx)
		name := fmt.Sprintf("socket.io never-reader %s on %s", user, node.name)
		if c, err := dialSioHostile(r.ctx, node, name, r.token(user), nil, false); err != nil {
			r.fail(name, "dial: %v", err)
		} else {
			pages(c)
			hogs = append(hogs, hog{name: name, ws: c.ws})
		}
	}
	return hogs
}

// checkHogs reads each never-reader's connection: the server must have ended
// it (bounded), whatever it had queued.
func (r *run) checkHogs(hogs []hog) {
	var wg sync.WaitGroup
	for _, h := range hogs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer h.ws.Close()
			n, closeErr, err := waitClosed(h.ws, 60*time.Second)
			r.count("hog", "never-reader", closedOutcome(err))
			r.logf("%s: cut off after %d bytes read back (%v)", h.name, n, closeErr)
			if err != nil {
				r.fail(h.name, "not cut off: %v", err)
			}
		}()
	}
	wg.Wait()
}

// halfOpen is a connection opened and left silent; check verifies that the
// node ended it.
type halfOpen struct {
	name  string
	check func(limit time.Duration) error
}

// startHalfOpen opens silent connections of every kind on a node.
func (r *run) startHalfOpen(node *chatd, idx int) []halfOpen {
	var out []halfOpen
	add := func(name string, check func(time.Duration) error) {
		out = append(out, halfOpen{name: fmt.Sprintf("%s on %s", name, node.name), check: check})
	}
	tcpClosed := func(c net.Conn) func(time.Duration) error {
		return func(limit time.Duration) error {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(limit))
			_, err := io.Copy(io.Discard, c) // an HTTP 408 may come first
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("still open after %v", limit)
			}
			return nil
		}
	}
	for i := range r.prof.halfOpen {
		c, err := net.DialTimeout("tcp", node.addr, 5*time.Second)
		if err != nil {
			r.fail("half-open TCP", "dial: %v", err)
			continue
		}
		add(fmt.Sprintf("TCP connection %d that sends nothing", i), tcpClosed(c))
	}
	// Slowloris: request headers one line a second.
	if c, err := net.DialTimeout("tcp", node.addr, 5*time.Second); err == nil {
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: "+node.addr+"\r\n")
		go func() {
			for i := range 30 {
				time.Sleep(time.Second)
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := fmt.Fprintf(c, "X-Slow-%d: x\r\n", i); err != nil {
					return
				}
			}
		}()
		add("slowloris (a header line a second)", tcpClosed(c))
	}
	// WebSocket upgraded, then silent: answers no ping.
	for i := range 2 {
		user := fmt.Sprintf("silent-%d-%d", idx, i)
		c, err := dialNative(r.ctx, node, "silent", r.token(user), nil, false)
		if err != nil {
			r.fail("half-open WebSocket", "dial: %v", err)
			continue
		}
		add("native WebSocket upgraded then silent", func(limit time.Duration) error {
			defer c.close()
			_, _, err := waitClosed(c.ws, limit)
			return err
		})
	}
	// Socket.IO: a polling handshake, then nothing (no CONNECT).
	for range 2 {
		sid, err := sioPollHandshake(r.ctx, node)
		if err != nil {
			r.fail("half-open Socket.IO polling", "handshake: %v", err)
			continue
		}
		add("Socket.IO polling handshake then silent", func(time.Duration) error {
			return sioSessionGone(r.ctx, node, sid)
		})
	}
	// Socket.IO over WebSocket, open packet read, then nothing.
	for range 2 {
		ws, _, err := sioOpen(r.ctx, node.sio())
		if err != nil {
			r.fail("half-open Socket.IO WebSocket", "open: %v", err)
			continue
		}
		add("Socket.IO WebSocket opened then silent (no CONNECT)", func(limit time.Duration) error {
			defer ws.Close()
			_, _, err := waitClosed(ws, limit)
			return err
		})
	}
	return out
}

// sioPollHandshake opens an Engine.IO session over long-polling.
func sioPollHandshake(ctx context.Context, node *chatd) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, node.http()+"/socket.io/?EIO=4&transport=polling", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	var open struct {
		SID string `json:"sid"`
	}
	if res.StatusCode != http.StatusOK || len(b) == 0 || b[0] != '0' || json.Unmarshal(b[1:], &open) != nil {
		return "", fmt.Errorf("handshake: %d %q", res.StatusCode, b)
	}
	return open.SID, nil
}

// sioSessionGone polls the session once: it must be gone (400 "Session ID
// unknown", or a close packet).
func sioSessionGone(ctx context.Context, node *chatd, sid string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, node.http()+"/socket.io/?EIO=4&transport=polling&sid="+sid, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("session still open (the poll waits): %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if res.StatusCode == http.StatusBadRequest && strings.Contains(string(b), `"code":1`) || res.StatusCode == http.StatusOK && string(b) == "1" {
		return nil
	}
	return fmt.Errorf("session still open: %d %q", res.StatusCode, b)
}

// checkHalfOpen verifies that each silent connection was ended.
func (r *run) checkHalfOpen(hs []halfOpen, limit time.Duration) {
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.check(limit)
			r.count("half-open", h.name, closedOutcome(err))
			if err != nil {
				r.fail(h.name, "%v", err)
			}
		}()
	}
	wg.Wait()
}

// runResumes connects again and again and resumes every shared group from
// 0: each replay must hold every message acked before it, in strictly
// increasing seq order, and end with an ok.
func (r *run) runResumes(user string, sio bool, n int) {
	proto := "native"
	if sio {
		proto = "socket.io"
	}
	for i := range n {
		node := r.nodes[i%len(r.nodes)]
		name := fmt.Sprintf("%s resume %d from 0 on %s (%s)", proto, i, node.name, user)
		before := map[string][]acked{}
		pos := map[string]int64{}
		for _, g := range r.shared {
			before[g] = r.led.inConv(g)
			pos[g] = 0
		}
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		conn, err := dialChat(ctx, node, r.token(user), sio)
		cancel()
		if err != nil {
			r.fail(name, "dial: %v", err)
			continue
		}
		seen := map[string]map[string]bool{}
		last := map[string]int64{}
		var disorder []string
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for p := range conn.PushCh() {
				if p.Seq == 0 {
					continue
				}
				conv := convOf(p.Data)
				if p.Seq <= last[conv] && len(disorder) < 5 {
					disorder = append(disorder, fmt.Sprintf("%s seq %d after %d", conv, p.Seq, last[conv]))
				}
				last[conv] = max(last[conv], p.Seq)
				if p.Type == "message.new" {
					if seen[conv] == nil {
						seen[conv] = map[string]bool{}
					}
					var m struct {
						MessageID string `json:"message_id"`
					}
					_ = json.Unmarshal(p.Data, &m)
					seen[conv][m.MessageID] = true
				}
			}
		}()
		sctx, scancel := context.WithTimeout(r.ctx, 60*time.Second)
		_, err = conn.Request(sctx, "sync", map[string]any{"positions": pos})
		scancel()
		_ = conn.Close()
		<-consumed
		r.count(proto, "resume from 0", codeOf(err))
		if err != nil {
			if codeOf(err) != "rate_limited" && codeOf(err) != "unavailable" {
				r.fail(name, "sync: %v", err)
			}
			continue
		}
		if len(disorder) > 0 {
			r.fail(name, "replay out of order: %v", disorder)
		}
		for g, ms := range before {
			var lacks []string
			for _, m := range ms {
				if !seen[g][m.MessageID] {
					lacks = append(lacks, fmt.Sprintf("%s seq %d", m.MessageID, m.Seq))
				}
			}
			if len(lacks) > 0 {
				r.fail(name, "the replay of %s lacks %d messages acked before it, e.g. %v", g, len(lacks), lacks[:min(5, len(lacks))])
			}
		}
	}
}

func codeOf(err error) string {
	var we *wsclient.Error
	switch {
	case err == nil:
		return ok
	case errors.As(err, &we):
		return we.Code
	}
	return "error: " + clip(err.Error())
}

// dialChat connects a client of either protocol.
func dialChat(ctx context.Context, node *chatd, token string, sio bool) (chatConn, error) {
	if sio {
		c, err := dialSio(ctx, node.sio(), token)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	c, res, err := wsclient.Dial(ctx, node.ws(), token, wsclient.Options{})
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	return nativeConn{c}, nil
}

// runHandshakeFlood opens n Socket.IO sessions that never authenticate and
// n upgrades of /ws with no token: the sessions must expire, the upgrades
// get 401.
func (r *run) runHandshakeFlood(node *chatd, n int) {
	name := "handshake flood on " + node.name
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if i%2 == 0 {
					_, err := sioPollHandshake(r.ctx, node)
					r.count("socket.io", "unauthenticated handshake", codeOf(err))
					// Past CHAT_SOCKETIO_MAX_PENDING unauthenticated sessions
					// a handshake gets 503 (docs/socketio.md).
					if err != nil && !strings.Contains(err.Error(), "handshake: 503") {
						r.fail(name, "handshake %d: %v", i, err)
					}
					continue
				}
				status := upgradeStatus(r.ctx, node, "Bearer not-a-token", "")
				r.count("native", "upgrade with a bad token", fmt.Sprint(status))
				if status != http.StatusUnauthorized {
					r.fail(name, "upgrade %d with a bad token: HTTP %d, want 401", i, status)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// upgradeStatus tries a /ws upgrade and returns the HTTP status.
func upgradeStatus(ctx context.Context, node *chatd, authz, query string) int {
	h := http.Header{}
	if authz != "" {
		h.Set("Authorization", authz)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, res, err := d.DialContext(ctx, node.ws()+query, h)
	if ws != nil {
		ws.Close()
	}
	if res == nil {
		if err != nil {
			return -1
		}
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// runAuth tries every kind of bad token on both protocols.
func (r *run) runAuth(node *chatd) {
	name := "authentication on " + node.name
	secret := r.env.Cfg.JWTSecret
	b64 := base64.RawURLEncoding.EncodeToString
	exp := time.Now().Add(time.Hour).Unix()
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(fmt.Sprintf(`{"sub":"mallory","exp":%d}`, exp))) + "."
	expired, _ := auth.Mint(secret, "mallory", -time.Hour)
	wrongKey, _ := auth.Mint("not-the-secret", "mallory", time.Hour)
	sign := func(claims jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		return s
	}
	badSub := sign(jwt.MapClaims{"sub": "bad user", "exp": exp})
	nulSub := sign(jwt.MapClaims{"sub": "mal\x00lory", "exp": exp})
	longSub := sign(jwt.MapClaims{"sub": strings.Repeat("a", 65), "exp": exp})
	noExp := sign(jwt.MapClaims{"sub": "mallory"})
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "mallory", "exp": exp}).SignedString([]byte(secret))
	for _, tc := range []struct{ name, token string }{
		{"no token", ""}, {"garbage", "garbage"}, {"alg none", algNone}, {"expired", expired}, {"wrong key", wrongKey},
		{"sub with a space", badSub}, {"sub with U+0000", nulSub}, {"sub of 65 chars", longSub}, {"no exp", noExp}, {"HS512", hs512},
		{"huge", strings.Repeat("A", 6000)},
	} {
		authz := ""
		if tc.token != "" {
			authz = "Bearer " + tc.token
		}
		status := upgradeStatus(r.ctx, node, authz, "")
		r.count("native", "token: "+tc.name, fmt.Sprint(status))
		if status != http.StatusUnauthorized {
			r.fail(name, "/ws with token %s: HTTP %d, want 401", tc.name, status)
		}
		ws, _, err := sioOpen(r.ctx, node.sio())
		if err != nil {
			r.fail(name, "socket.io open: %v", err)
			continue
		}
		var authData any = map[string]string{"token": tc.token}
		if tc.token == "" {
			authData = nil
		}
		ans, err := sioConnect(ws, authData)
		ws.Close()
		r.count("socket.io", "token: "+tc.name, connectAnswer(ans))
		if err != nil || !strings.HasPrefix(ans, "44") || !strings.Contains(ans, `"code":"unauthorized"`) {
			r.fail(name, "socket.io CONNECT with token %s: %q %v, want CONNECT_ERROR unauthorized", tc.name, ans, err)
		}
	}
	// A token as a number, and a namespace that does not exist.
	for _, tc := range []struct{ name, pkt, want string }{
		{"token a number", `40{"token":123}`, `"code":"unauthorized"`},
		{"unknown namespace", `40/admin,{"token":` + js(r.token("nsuser")) + `}`, "Invalid namespace"},
	} {
		ws, _, err := sioOpen(r.ctx, node.sio())
		if err != nil {
			r.fail(name, "socket.io open: %v", err)
			continue
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(tc.pkt))
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		ws.Close()
		if err != nil || !strings.HasPrefix(string(b), "44") || !strings.Contains(string(b), tc.want) {
			r.fail(name, "socket.io %s: %q %v, want CONNECT_ERROR with %s", tc.name, b, err, tc.want)
		}
	}
	// A valid token in the query string (browsers) is accepted.
	if status := upgradeStatus(r.ctx, node, "", "?access_token="+r.token("query-user")); status != http.StatusSwitchingProtocols {
		r.fail(name, "/ws?access_token=<valid>: HTTP %d, want 101", status)
	}
	// Engine.IO requests the server cannot serve.
	for _, tc := range []struct{ query, want string }{
		{"EIO=3&transport=polling", `"code":5`}, {"EIO=4&transport=flash", `"code":0`},
		{"EIO=4&transport=polling&sid=nope", `"code":1`}, {"EIO=4&transport=polling&sid=" + strings.Repeat("x", 4000), `"code":1`},
	} {
		code, body := node.get("/socket.io/?" + tc.query)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			r.fail(name, "GET /socket.io/?%s: %d %q, want 400 with %s", clip(tc.query), code, clip(body), tc.want)
		}
	}
}

// runConnCap opens CHAT_MAX_CONNS_PER_USER (32) connections of one user on
// a node: the next one is closed with 1013.
func (r *run) runConnCap(node *chatd, user string) {
	name := "connection cap on " + node.name
	var conns []*hconn
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for i := range 32 {
		c, err := dialNative(r.ctx, node, name, r.token(user), nil, true)
		if err != nil {
			r.fail(name, "connection %d of 32: %v", i+1, err)
			return
		}
		conns = append(conns, c)
		// A reply proves the node registered it (the upgrade's answer comes
		// first): otherwise the next dial may take its place.
		if rep, err := c.request("conversation.list", []byte(`{"limit":1}`)); err != nil || rep.code != ok {
			r.fail(name, "connection %d of 32: conversation.list: %s %v", i+1, rep.code, err)
			return
		}
	}
	c, err := dialNative(r.ctx, node, name, r.token(user), nil, false)
	if err != nil {
		r.fail(name, "connection 33: %v", err)
		return
	}
	defer c.close()
	_, closeErr, err := waitClosed(c.ws, 15*time.Second)
	r.count("native", "33rd connection of a user", fmt.Sprint(closeCode(closeErr)))
	if err != nil || closeCode(closeErr) != 1013 {
		r.fail(name, "the 33rd connection: %v %v, want close 1013", closeErr, err)
	}
	for i, c := range conns {
		if !c.alive() {
			r.fail(name, "connection %d of 32 was closed: %v", i+1, c.closeEr)
		}
	}
}

// runBigSync: one sync of as many unknown conversations as allowed
// (service.MaxSyncPositions) is answered, costs the rate limiter (the next
// command may be rate_limited for a while), and one more is refused.
func (r *run) runBigSync(node *chatd, user string, rnd *rand.Rand) {
	name := fmt.Sprintf("sync of %d unknown conversations on %s", service.MaxSyncPositions, node.name)
	c, err := dialNative(r.ctx, node, name, r.token(user), nil, true)
	if err != nil {
		r.fail(name, "dial: %v", err)
		return
	}
	defer c.close()
	pos := map[string]int64{}
	for len(pos) < service.MaxSyncPositions {
		pos[fmt.Sprintf("c_%016x", rnd.Uint64())] = rnd.Int64N(1 << 20)
	}
	rep, err := c.request("sync", []byte(`{"positions":`+js(pos)+`}`))
	r.count("native", "largest sync", rep.code)
	if err != nil || rep.code != ok {
		r.fail(name, "got %s %q %v, want ok", rep.code, rep.msg, err)
	}
	r.afterCost(c, name)
	pos[fmt.Sprintf("c_%016x", rnd.Uint64())] = 1
	rep, err = c.request("sync", []byte(`{"positions":`+js(pos)+`}`))
	r.count("native", "sync one over the limit", rep.code)
	if err != nil || rep.code != badReq || !strings.Contains(rep.msg, "positions") {
		r.fail(name+" + 1", "got %s %q %v, want bad_request naming positions", rep.code, rep.msg, err)
	}
	r.afterCost(c, name+" + 1")
}

// afterCost waits (bounded) until the connection's rate limiter lets a
// command through again, and checks the connection is still usable.
func (r *run) afterCost(c *hconn, name string) {
	var rep reply
	var err error
	for range 20 {
		rep, err = c.request("conversation.list", nil)
		if err != nil || rep.code != "rate_limited" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || rep.code != ok {
		r.fail(name, "conversation.list after it: %s %v", rep.code, err)
	}
}

// connectAnswer names a CONNECT answer: "connected" or "connect_error
// <code>".
func connectAnswer(ans string) string {
	if strings.HasPrefix(ans, "40") {
		return "connected"
	}
	var e struct {
		Data struct {
			Code string `json:"code"`
		} `json:"data"`
	}
	if strings.HasPrefix(ans, "44") && json.Unmarshal([]byte(ans[2:]), &e) == nil {
		return "connect_error " + e.Data.Code
	}
	return "other: " + clip(ans)
}

// pollSession is an authenticated Engine.IO long-polling session, spoken
// by hand.
type pollSession struct {
	node *chatd
	sid  string
}

func (p *pollSession) do(ctx context.Context, method, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, p.node.http()+"/socket.io/?EIO=4&transport=polling&sid="+p.sid, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	return res.StatusCode, string(b), nil
}

// packets polls once and returns the packets, pings answered and dropped.
func (p *pollSession) packets(ctx context.Context) ([]string, int, error) {
	code, body, err := p.do(ctx, http.MethodGet, "")
	if err != nil || code != http.StatusOK {
		return nil, code, err
	}
	var out []string
	for _, pk := range strings.Split(body, "\x1e") {
		if pk == "2" {
			_, _, _ = p.do(ctx, http.MethodPost, "3")
			continue
		}
		out = append(out, pk)
	}
	return out, code, nil
}

func dialPolling(ctx context.Context, node *chatd, token string) (*pollSession, error) {
	sid, err := sioPollHandshake(ctx, node)
	if err != nil {
		return nil, err
	}
	p := &pollSession{node: node, sid: sid}
	if code, body, err := p.do(ctx, http.MethodPost, `40{"token":`+js(token)+`}`); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("CONNECT: %d %q %v", code, body, err)
	}
	for range 5 {
		pks, code, err := p.packets(ctx)
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("CONNECT answer: %d %v", code, err)
		}
		for _, pk := range pks {
			if strings.HasPrefix(pk, "40") {
				return p, nil
			}
			if strings.HasPrefix(pk, "44") {
				return nil, fmt.Errorf("CONNECT refused: %s", pk)
			}
		}
	}
	return nil, errors.New("no CONNECT answer")
}

// closed: the session is over (a poll gets its close packet, or 400).
func (p *pollSession) closed(ctx context.Context) error {
	code, body, err := p.do(ctx, http.MethodGet, "")
	switch {
	case err != nil:
		return err
	case code == http.StatusBadRequest:
		return nil
	case code == http.StatusOK && (body == "1" || strings.HasSuffix(body, "\x1e1")):
		return nil
	}
	return fmt.Errorf("still open: %d %q", code, clip(body))
}

// runPollingAbuse attacks the long-polling transport: many commands in one
// payload (each acked once), then on fresh sessions a payload over 64 KiB,
// bad base64 and overlapping polls, each of which must close the session.
func (r *run) runPollingAbuse(node *chatd, user string) {
	name := "Socket.IO long-polling abuse on " + node.name
	tok := r.token(user)
	p, err := dialPolling(r.ctx, node, tok)
	if err != nil {
		r.fail(name, "dial: %v", err)
		return
	}
	var pkts []string
	for i := range 30 {
		pkts = append(pkts, fmt.Sprintf(`42%d["conversation.list",{"limit":1}]`, i+1))
	}
	if code, body, err := p.do(r.ctx, http.MethodPost, strings.Join(pkts, "\x1e")); err != nil || code != http.StatusOK {
		r.fail(name, "30 emits in one payload: %d %q %v", code, body, err)
	} else {
		acks := map[int64]string{}
		for deadline := time.Now().Add(30 * time.Second); len(acks) < 30 && time.Now().Before(deadline); {
			got, code, err := p.packets(r.ctx)
			if err != nil || code != http.StatusOK {
				r.fail(name, "poll: %d %v", code, err)
				break
			}
			for _, pk := range got {
				if id, ack, _, isAck := parseSioAck([]byte(pk)); isAck {
					if _, dup := acks[id]; dup {
						r.fail(name, "ack %d twice", id)
					}
					acks[id] = fmt.Sprint(ack.OK)
				}
			}
		}
		r.count("socket.io", "30 emits in one polling payload", fmt.Sprintf("%d acks", len(acks)))
		if len(acks) != 30 {
			r.fail(name, "%d acks for 30 emits in one payload", len(acks))
		}
	}
	for _, tc := range []struct {
		name string
		run  func(p *pollSession) (int, error)
		want int
	}{
		{"a POST over 64 KiB", func(p *pollSession) (int, error) {
			code, _, err := p.do(r.ctx, http.MethodPost, `42["conversation.list",{"pad":"`+strings.Repeat("p", 64<<10)+`"}]`)
			return code, err
		}, http.StatusRequestEntityTooLarge},
		{"bad base64", func(p *pollSession) (int, error) {
			code, _, err := p.do(r.ctx, http.MethodPost, "b!!!not base64")
			return code, err
		}, http.StatusBadRequest},
		{"an unknown packet in a payload", func(p *pollSession) (int, error) {
			code, _, err := p.do(r.ctx, http.MethodPost, `42["conversation.list"]`+"\x1e9")
			return code, err
		}, http.StatusBadRequest}, // the whole payload is refused
		{"overlapping polls", func(p *pollSession) (int, error) {
			first := make(chan struct{})
			go func() { defer close(first); _, _, _ = p.do(r.ctx, http.MethodGet, "") }()
			time.Sleep(300 * time.Millisecond)
			code, _, err := p.do(r.ctx, http.MethodGet, "")
			<-first
			return code, err
		}, http.StatusBadRequest},
	} {
		s, err := dialPolling(r.ctx, node, tok)
		if err != nil {
			r.fail(name, "%s: dial: %v", tc.name, err)
			continue
		}
		code, err := tc.run(s)
		r.count("socket.io", "polling: "+tc.name, fmt.Sprint(code))
		if err != nil || code != tc.want {
			r.fail(name, "%s: HTTP %d %v, want %d", tc.name, code, err, tc.want)
		}
		if err := s.closed(r.ctx); err != nil {
			r.fail(name, "%s: the session was not closed: %v", tc.name, err)
		}
	}
}
