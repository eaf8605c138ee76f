package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/internal/harness"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// sendUntilAcked sends one message, retrying the same client_msg_id (an
// idempotent send) until it is acked.
func sendUntilAcked(t *testing.T, c *wsclient.Client, conv, cmid string) domain.Message {
	t.Helper()
	var last error
	for range 10 {
		m, err := send(c, conv, cmid)
		if err == nil {
			return m
		}
		last = err
	}
	t.Fatalf("send %s never acked: %v", cmid, last)
	return domain.Message{}
}

// Postgres stops while messages flow: chat goes on, the projector stalls,
// and once Postgres is back every acked message is in the read models
// exactly once, and they equal a rebuild from the log. The projector meets
// the outage either in a batch or while it joins its group (reading the
// offsets stored with the read models).
func TestPostgresOutage(t *testing.T) {
	t.Run("WhileProjecting", func(t *testing.T) { postgresOutage(t, false) })
	t.Run("WhileTheProjectorJoins", func(t *testing.T) { postgresOutage(t, true) })
}

func postgresOutage(t *testing.T, joining bool) {
	pg := harness.StartPG(t, "chat")
	t.Setenv("CHAT_DATABASE_URL", pg.URL("chat"))
	env := testenv.New(t)
	replayEnv(t, env)
	var node *testenv.Node
	stall := "batch failed; retrying"
	if joining {
		node = env.StartNode("gateway", "fanout")
		stall = "stored offsets unreadable; retrying"
	} else {
		node = env.StartNode()
	}
	alice, bob := dial(t, env, node, "alice"), dial(t, env, node, "bob")
	g1 := create(t, alice, "group", "bob")
	if !joining {
		waitProjected(t, node) // the projector is in its group before the outage
	}

	acked := map[string]int64{}
	for i := range 150 {
		switch i {
		case 40:
			pg.StopMode("immediate") // a crash, not a clean shutdown
			if joining {
				env.StartNode("projector")
			}
		case 110:
			// The projector met the outage (and stalled) before Postgres returns.
			testenv.WaitFor(t, 30*time.Second, "the projector to stall: "+stall, func() bool {
				return strings.Contains(env.Logs.String(), stall)
			})
			if err := pg.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		who := alice
		if i%4 == 3 {
			who = bob
		}
		cmid := fmt.Sprintf("m%03d", i)
		m := sendUntilAcked(t, who, g1, cmid)
		acked[cmid] = m.Seq
	}

	ctx := context.Background()
	msgs := pgx.Identifier{env.Cfg.DBSchema, "messages"}.Sanitize()
	testenv.WaitFor(t, 60*time.Second, "every acked message in the read model", func() bool {
		var n int
		err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM `+msgs+` WHERE conversation_id=$1`, g1).Scan(&n)
		return err == nil && n >= len(acked)
	})
	rows, err := env.Pool.Query(ctx, `SELECT client_msg_id, seq FROM `+msgs+` WHERE conversation_id=$1`, g1)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var cmid string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&cmid, &seq}, func() error {
		if _, dup := got[cmid]; dup {
			t.Errorf("message %s twice", cmid)
		}
		got[cmid] = seq
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(acked) {
		t.Fatalf("%d messages in the read model, %d acked", len(got), len(acked))
	}
	for c, s := range acked {
		if got[c] != s {
			t.Errorf("message %s: seq %d in the read model, acked with %d", c, got[c], s)
		}
	}
	waitProjected(t, node)
	res, err := runReplay(ctx, env.Cfg, replayFlags{DryRun: true, Batch: 500, Parallel: 2}, nil, testLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Diffs {
		if !d.Equal() {
			t.Errorf("after the outage, %s differs from a rebuild: %+v", d.Table, d)
		}
	}
}

// The projector stops mid-stream (its batch cut off, its offsets partly
// committed) and another takes over: no row differs from a rebuild and no
// message is missing or doubled.
func TestProjectorRestartMidStream(t *testing.T) {
	env := testenv.New(t)
	replayEnv(t, env)
	gw := env.StartNode("gateway", "fanout")
	p1 := env.StartNode("projector")
	alice, bob := dial(t, env, gw, "alice"), dial(t, env, gw, "bob")
	g1 := create(t, alice, "group", "bob")
	g2 := create(t, bob, "direct", "alice")

	acked := map[string]int64{}
	var p2 *testenv.Node
	for i := range 300 {
		switch i {
		case 100:
			p1.Stop()
		case 140:
			p2 = env.StartNode("projector")
		case 220:
			p2.Stop()
			p2 = env.StartNode("projector")
		}
		who, conv := alice, g1
		if i%3 == 0 {
			who, conv = bob, g2
		}
		cmid := fmt.Sprintf("m%03d", i)
		m := sendUntilAcked(t, who, conv, cmid)
		acked[cmid] = m.Seq
		if i%50 == 49 {
			must(t, bob, "read", map[string]any{"conversation_id": g1, "seq": acked[cmid]}, nil)
			must(t, who, "message.react", map[string]any{"conversation_id": conv, "message_id": m.MessageID, "emoji": "🎉"}, nil)
		}
	}
	waitProjected(t, p2)
	n := env.Count(`SELECT count(*) FROM {s}.messages`)
	d := env.Count(`SELECT count(DISTINCT client_msg_id) FROM {s}.messages`)
	if n != len(acked) || d != len(acked) {
		t.Fatalf("%d messages (%d distinct) in the read model, %d acked", n, d, len(acked))
	}
	res, err := runReplay(context.Background(), env.Cfg, replayFlags{DryRun: true, Batch: 64, Parallel: 2}, nil, testLog())
	if err != nil {
		t.Fatal(err)
	}
	requireEqual(t, res.Diffs)
}

// TestProjectorCatchesUpARestoredDatabase restores the read models to a
// state older than the projector group's committed offsets (here: empty, as
// from a backup taken before the first event). The projector must start at
// the offsets stored with the read models, not at the group's, and rebuild
// everything; starting at the group's would skip those events for good.
func TestProjectorCatchesUpARestoredDatabase(t *testing.T) {
	env := testenv.New(t)
	gw := env.StartNode("gateway", "fanout")
	p1 := env.StartNode("projector")
	alice := dial(t, env, gw, "alice")
	g := create(t, alice, "group", "bob")
	for i := range 40 {
		sendUntilAcked(t, alice, g, fmt.Sprintf("m%02d", i))
	}
	waitProjected(t, p1)
	ctx := context.Background()
	group := env.Cfg.GroupPrefix + app.ProjectorGroup
	testenv.WaitFor(t, 30*time.Second, "the projector group to commit the log's end", func() bool {
		lag, err := p1.App.KafkaLog.GroupLag(ctx, group)
		if err != nil {
			return false
		}
		for _, l := range lag {
			if l > 0 {
				return false
			}
		}
		return true
	})
	p1.Stop()

	schema := pgx.Identifier{env.Cfg.DBSchema}.Sanitize()
	if _, err := env.Pool.Exec(ctx, `DO $$ DECLARE t text; BEGIN
		FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = '`+env.Cfg.DBSchema+`' AND tablename <> 'schema_migrations' LOOP
			EXECUTE 'TRUNCATE `+strings.ReplaceAll(schema, "'", "''")+`.' || t || ' CASCADE';
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	if n := env.Count(`SELECT count(*) FROM {s}.messages`); n != 0 {
		t.Fatalf("restore left %d messages", n)
	}

	p2 := env.StartNode("projector")
	waitProjected(t, p2)
	if n := env.Count(`SELECT count(*) FROM {s}.messages`); n != 40 {
		t.Fatalf("%d messages in the read model after the restore, want 40", n)
	}
	if n := env.Count(`SELECT count(*) FROM {s}.conversations`); n != 1 {
		t.Fatalf("%d conversations in the read model after the restore, want 1", n)
	}
}
