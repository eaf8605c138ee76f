package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
	"github.com/parley-chat/parley/projections"
)

func dial(t *testing.T, env *testenv.Env, n *testenv.Node, user string) *wsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := wsclient.Dial(ctx, n.WS, env.Token(user), wsclient.Options{PushBuf: 100000})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", n.WS, user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(c *wsclient.Client, typ string, data any, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := c.Request(ctx, typ, data)
	if err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	if into == nil {
		return nil
	}
	return json.Unmarshal(raw, into)
}

func must(t *testing.T, c *wsclient.Client, typ string, data any, into any) {
	t.Helper()
	if err := call(c, typ, data, into); err != nil {
		t.Fatal(err)
	}
}

type convReply struct {
	Conversation domain.Conversation `json:"conversation"`
}

type msgReply struct {
	Message domain.Message `json:"message"`
}

type historyReply struct {
	Messages []domain.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

func create(t *testing.T, c *wsclient.Client, kind string, members ...string) string {
	t.Helper()
	var r convReply
	must(t, c, "conversation.create", map[string]any{"kind": kind, "title": "room", "members": members}, &r)
	return r.Conversation.ConversationID
}

func send(c *wsclient.Client, conv, cmid string) (domain.Message, error) {
	var r msgReply
	err := call(c, "message.send", map[string]any{"conversation_id": conv, "client_msg_id": cmid, "body": "body " + cmid}, &r)
	return r.Message, err
}

// mixedWorkload drives every state-changing command through the gateway:
// creates (group and direct), joins, leaves, sends, edits, deletes, reads
// (one repeated).
func mixedWorkload(t *testing.T, alice, bob, carol, dave *wsclient.Client) []string {
	t.Helper()
	g1 := create(t, alice, "group", "bob", "carol")
	g2 := create(t, bob, "group", "carol")
	d1 := create(t, alice, "direct", "dave")
	if again := create(t, dave, "direct", "alice"); again != d1 {
		t.Fatalf("direct conversation %s, then %s", d1, again)
	}
	var sent []domain.Message
	for i := range 40 {
		who, conv := []*wsclient.Client{alice, bob, carol}[i%3], []string{g1, g1, g2}[i%3]
		if i%3 == 0 && i%2 == 0 {
			conv = d1
		}
		if who == carol && i%2 == 0 {
			conv = g1
		}
		m, err := send(who, conv, fmt.Sprintf("w%d", i))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	must(t, alice, "conversation.add_member", map[string]any{"conversation_id": g1, "user_id": "dave"}, nil)
	if _, err := send(dave, g1, "hi-from-dave"); err != nil {
		t.Fatal(err)
	}
	must(t, carol, "conversation.leave", map[string]any{"conversation_id": g2}, nil)
	for i, m := range sent[:15] {
		if m.SenderID == "carol" && m.ConversationID == g2 {
			continue // carol left g2
		}
		by := map[string]*wsclient.Client{"alice": alice, "bob": bob, "carol": carol}[m.SenderID]
		if i%2 == 0 {
			must(t, by, "message.edit", map[string]any{"conversation_id": m.ConversationID, "message_id": m.MessageID, "body": "edited"}, nil)
		}
		if i%3 == 0 {
			must(t, by, "message.delete", map[string]any{"conversation_id": m.ConversationID, "message_id": m.MessageID}, nil)
		}
	}
	// Reactions on a message no one deleted: added, one removed again.
	for _, m := range sent[15:] {
		if m.ConversationID != g1 {
			continue
		}
		react := map[string]any{"conversation_id": g1, "message_id": m.MessageID, "emoji": "👍"}
		must(t, alice, "message.react", react, nil)
		must(t, bob, "message.react", react, nil)
		must(t, bob, "message.unreact", react, nil)
		break
	}
	last := sent[len(sent)-1].Seq
	must(t, bob, "read", map[string]any{"conversation_id": g1, "seq": last}, nil)
	must(t, bob, "read", map[string]any{"conversation_id": g1, "seq": last}, nil)
	must(t, dave, "read", map[string]any{"conversation_id": d1, "seq": last}, nil)
	return []string{g1, g2, d1}
}

// waitProjected waits until the node's read models hold everything logged.
func waitProjected(t *testing.T, n *testenv.Node) {
	t.Helper()
	ctx := context.Background()
	hwm, err := n.App.KafkaLog.HighWaterMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the projector to reach the log's end", func() bool {
		for p, end := range hwm {
			off, err := n.App.Store.ProjectedOffset(ctx, p)
			if err != nil || off < end {
				return false
			}
		}
		return true
	})
}

// replayEnv prepares the control schema and removes, after the test, every
// schema a replay of env's deployment built, its analytics views and its
// pointer.
func replayEnv(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	if err := pgstore.MigrateControl(ctx, env.Cfg.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rows, err := env.Pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 || '\_%'`, env.Cfg.DBSchema)
		if err != nil {
			return
		}
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, n := range names {
			_, _ = env.Pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE")
		}
		_, _ = env.Pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, env.Cfg.DBSchema)
	})
}

func testLog() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("PARLEY_TEST_LOGS") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

func requireEqual(t *testing.T, diffs []projections.TableDiff) {
	t.Helper()
	if len(diffs) != len(projections.ComparedTables) {
		t.Fatalf("compared %d tables, want %d", len(diffs), len(projections.ComparedTables))
	}
	for _, d := range diffs {
		if !d.Equal() {
			t.Errorf("%s differs: live %d rows, rebuilt %d, only live %d, only rebuilt %d: %v",
				d.Table, d.Live, d.Rebuilt, d.OnlyLive, d.OnlyRebuilt, d.Samples)
		}
		if d.Live == 0 {
			t.Errorf("%s is empty: the workload did not reach it", d.Table)
		}
	}
}

// errCounter collects errors from background loops.
type errCounter struct {
	mu   sync.Mutex
	n    int
	errs []error
}

func (e *errCounter) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.errs) < 5 {
		e.errs = append(e.errs, err)
	}
}

func (e *errCounter) get() (int, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n, e.errs
}
