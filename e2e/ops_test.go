package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// After a small workload across two nodes, the core series exist and moved,
// and no log line carries a message body or a token.
func TestOpsMetricsAndLogs(t *testing.T) {
	env := testenv.New(t)
	n1 := env.StartNode("gateway", "fanout", "projector")
	n2 := env.StartNode("gateway")
	marker := "opsmarker" + testenv.RandHex(8)
	ta, tb := env.Token("alice"), env.Token("bob")
	secrets := []string{ta, tb}

	before := scrape(t, n1)
	alice := dialToken(t, n1.WS, ta)
	bob := dialToken(t, n2.WS+"?access_token="+tb, "") // the browser way: token in the query
	conv := createGroup(t, alice, "bob")
	nextPush(t, bob, domain.PushConversationCreated)

	const sends = 5
	for i := range sends {
		request[msgReply](t, alice, "message.send", map[string]any{"conversation_id": conv.ConversationID,
			"client_msg_id": fmt.Sprintf("ops%d", i), "body": fmt.Sprintf("%s body %d", marker, i)})
	}
	for range sends {
		nextPush(t, bob, domain.PushMessageNew)
	}
	// The paths where a body or a token could leak into an error: the HTTP
	// API, a frame that does not parse, a body over the limit, a bad token.
	postHTTP(t, n2, tb, conv.ConversationID, marker)
	if err := alice.WriteRaw([]byte(`{"id": 99, "type": "message.send", "data": {"body": "` + marker + ` unterminated`)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat(marker, 9000/len(marker)+1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := alice.Request(ctx, "message.send", map[string]any{"conversation_id": conv.ConversationID, "client_msg_id": "big", "body": big})
	cancel()
	if err == nil {
		t.Fatal("a body over 8192 bytes was accepted")
	}
	bogus := "eyJhbGciOiJIUzI1NiJ9." + marker + ".c2lnbmF0dXJl"
	secrets = append(secrets, bogus)
	if _, resp, err := wsclient.Dial(context.Background(), n1.WS, bogus, wsclient.Options{}); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bogus token: err %v, resp %v", err, resp)
	}

	after := scrape(t, n1)
	grew := func(name string, labels map[string]string, by float64) {
		t.Helper()
		b, _ := value(before, name, labels)
		a, ok := value(after, name, labels)
		if !ok || a-b < by {
			t.Errorf("%s%v: %v -> %v (present %v), want it up by >= %v", name, labels, b, a, ok, by)
		}
	}
	grew("parley_commands_total", map[string]string{"type": "message.send", "code": "ok"}, sends)
	grew("parley_commands_total", map[string]string{"type": "message.send", "code": "too_large"}, 1)
	grew("parley_command_duration_seconds_count", map[string]string{"type": "message.send"}, sends)
	grew("parley_kafka_produce_duration_seconds_count", nil, sends+1)
	grew("parley_delivery_latency_seconds_count", nil, 1)
	grew("parley_pushes_total", nil, sends)
	if v, _ := value(after, "parley_connections", map[string]string{"protocol": "ws"}); v < 2 {
		t.Errorf("parley_connections{protocol=ws} = %v with two clients connected", v)
	}
	// The consumers run on their own clock: poll until they caught up.
	fanoutGroup := env.Cfg.GroupPrefix + app.FanoutGroup
	testenv.WaitFor(t, 30*time.Second, "projector, fan-out and lag series to move", func() bool {
		m := scrape(t, n1)
		pe, _ := value(m, "parley_projector_events_total", nil)
		pb, _ := value(before, "parley_projector_events_total", nil)
		fe, _ := value(m, "parley_fanout_events_total", nil)
		fb, _ := value(before, "parley_fanout_events_total", nil)
		bs, _ := value(m, "parley_projector_batch_size_count", nil)
		bsb, _ := value(before, "parley_projector_batch_size_count", nil)
		lag, lagOK := value(m, "parley_consumer_lag", map[string]string{"group": fanoutGroup})
		ready, _ := value(m, "parley_ready", nil)
		return pe-pb >= sends+2 && fe-fb >= sends+2 && bs > bsb && lagOK && lag == 0 && ready == 1
	})

	// One line per connection open and close, with its reason.
	alice.Close()
	testenv.WaitFor(t, 10*time.Second, "alice's connection closed line", func() bool {
		return len(logLines(t, env, "connection closed", "alice")) > 0
	})
	closed := logLines(t, env, "connection closed", "alice")[0]
	if r, _ := closed["reason"].(string); r == "" {
		t.Errorf("connection closed line without a reason: %v", closed)
	}
	opened := logLines(t, env, "connection open", "alice")
	if len(opened) != 1 {
		t.Fatalf("want one connection open line for alice, got %v", opened)
	}
	if id := opened[0]["conn_id"]; id == nil || id != closed["conn_id"] {
		t.Errorf("open and close lines should share a conn_id: %v / %v", opened[0], closed)
	}

	logs := env.Logs.String()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", l)
		} else if rec["node_id"] == nil {
			t.Errorf("log line without node_id: %q", l)
		}
	}
	if strings.Contains(logs, marker) {
		t.Errorf("a message body reached the logs:\n%s", grepLines(logs, marker))
	}
	for _, s := range secrets {
		// Also the signature alone: a token cut at a dot is still a leak.
		for _, part := range []string{s, s[strings.LastIndexByte(s, '.')+1:]} {
			if strings.Contains(logs, part) {
				t.Errorf("a token reached the logs:\n%s", grepLines(logs, part))
			}
		}
	}
}

// /readyz answers 503 naming Redis while Redis is down, and 200 again once
// it is back: on the public listener by name only, on the ops listener with
// the error. /metrics is served by the ops listener only. The node uses a
// private redis-server that this test stops.
func TestReadyzFollowsRedis(t *testing.T) {
	env := testenv.New(t)
	port := testenv.FreePort(t)
	stop := startRedis(t, port)
	env.Cfg.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	n := env.StartNode("gateway")
	testenv.WaitFor(t, 20*time.Second, "ready with redis up", func() bool { s, _ := readyz(t, n); return s == 200 })
	errsBefore := sumFamily(scrape(t, n), "parley_redis_errors_total")

	stop()
	var body map[string]any
	testenv.WaitFor(t, 20*time.Second, "503 with redis down", func() bool {
		var s int
		s, body = readyz(t, n)
		return s == http.StatusServiceUnavailable
	})
	if down, _ := body["down"].([]any); len(down) != 1 || down[0] != "redis" || body["status"] != "unavailable" {
		t.Fatalf("public readyz body %v: want only redis named down", body)
	}
	if strings.Contains(fmt.Sprint(body), strconv.Itoa(port)) {
		t.Fatalf("public readyz tells the Redis address: %v", body)
	}
	st, ops := getJSON(t, n.Ops+"/readyz")
	if down, _ := ops["down"].(map[string]any); st != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(down["redis"]), strconv.Itoa(port)) {
		t.Fatalf("ops readyz %d %v: want redis down with its error", st, ops)
	}
	if resp, err := http.Get(n.HTTP + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public /metrics: %v %v, want 404 (metrics are on the ops listener)", resp.StatusCode, err)
	}
	testenv.WaitFor(t, 20*time.Second, "parley_dependency_up{redis} 0 and Redis errors counted", func() bool {
		m := scrape(t, n)
		up, ok := value(m, "parley_dependency_up", map[string]string{"dependency": "redis"})
		ready, _ := value(m, "parley_ready", nil)
		return ok && up == 0 && ready == 0 && sumFamily(m, "parley_redis_errors_total") > errsBefore
	})

	startRedis(t, port)
	testenv.WaitFor(t, 30*time.Second, "ready again with redis back", func() bool { s, _ := readyz(t, n); return s == 200 })
	testenv.WaitFor(t, 20*time.Second, "parley_dependency_up{redis} 1", func() bool {
		up, _ := value(scrape(t, n), "parley_dependency_up", map[string]string{"dependency": "redis"})
		return up == 1
	})
}

// dialToken dials url with a bearer token (none when token is "").
func dialToken(t *testing.T, url, token string) *wsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := wsclient.Dial(ctx, url, token, wsclient.Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func postHTTP(t *testing.T, n *testenv.Node, token, conv, marker string) {
	t.Helper()
	body := fmt.Sprintf(`{"client_msg_id": "http1", "body": "%s over http"}`, marker)
	req, _ := http.NewRequest(http.MethodPost, n.HTTP+"/api/v1/conversations/"+conv+"/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST message over HTTP: %d %s", resp.StatusCode, b)
	}
}

func readyz(t *testing.T, n *testenv.Node) (int, map[string]any) {
	t.Helper()
	return getJSON(t, n.HTTP+"/readyz")
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("readyz body is not JSON: %v", err)
	}
	return resp.StatusCode, body
}

func scrape(t *testing.T, n *testenv.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(n.Ops + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the samples of name whose labels include labels; name may be a
// histogram's _count. ok is false when no series matches.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	fam, count := fams[name], false
	if fam == nil {
		fam, count = fams[strings.TrimSuffix(name, "_count")], true
	}
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		ok = true
		switch {
		case count && m.GetHistogram() != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.GetCounter() != nil:
			v += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, ok
}

func sumFamily(fams map[string]*dto.MetricFamily, name string) float64 {
	v, _ := value(fams, name, nil)
	return v
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// logLines returns the JSON log records with message msg for user.
func logLines(t *testing.T, env *testenv.Env, msg, user string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(env.Logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg && rec["user_id"] == user {
			out = append(out, rec)
		}
	}
	return out
}

func grepLines(s, needle string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, needle) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// startRedis runs a private, non-persistent redis-server on port and returns
// a func that kills it (also run at cleanup).
func startRedis(t *testing.T, port int) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed (run `go tool task services:up`): %v", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	testenv.WaitFor(t, 10*time.Second, "private redis-server to accept", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return stop
}

// A gateway with dev auth on says so at start, as a warning: its dev token
// endpoint mints a token for anyone who reaches it. Without dev auth, no
// such line.
func TestDevAuthIsAnnounced(t *testing.T) {
	env := testenv.New(t)
	env.StartNode("gateway")
	testenv.WaitFor(t, 10*time.Second, "the dev auth warning", func() bool {
		return env.Logs.HasLine(`"level":"WARN"`, "dev auth is on")
	})
	quiet := testenv.New(t)
	quiet.Cfg.DevAuth = false
	quiet.StartNode("gateway")
	// The warning comes before "node started".
	testenv.WaitFor(t, 10*time.Second, "the node's start", func() bool { return quiet.Logs.Contains("node started") })
	if quiet.Logs.Contains("dev auth is on") {
		t.Fatal("a gateway without dev auth warned of it")
	}
}
