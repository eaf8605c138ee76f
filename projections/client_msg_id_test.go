package projections_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/projections"
)

// The idempotent-send fallback finds a send by its message id (commands
// derive it from the send) through the (conversation_id, message_id) key:
// only among the ids asked for, only the sender's with that client_msg_id,
// and with sequential scans off the plan reads that key.
func TestSentMessageUsesTheMessageKey(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	schema := freshSchema(t, pool)
	store := projections.NewStore(pool, schema, testTopic)
	applyAll(t, store, knownLog(), 4)

	m, found, err := store.SentMessage(ctx, "c1", "bob", "km3", []string{"m_other", "m3"})
	if err != nil || !found || m.MessageID != "m3" || m.Body != "fixed" {
		t.Fatalf("bob's km3 in c1: %+v, found %v, %v; want m3 with its edited body", m, found, err)
	}
	for _, miss := range []struct {
		conv, sender, cmid string
		ids                []string
	}{{"c1", "alice", "km3", []string{"m3"}}, {"c2", "bob", "km3", []string{"m3"}}, {"c1", "bob", "km", []string{"m3"}},
		{"c1", "bob", "km3", []string{"m2", "m4"}}, {"c1", "bob", "km3", nil}} {
		if m, found, err := store.SentMessage(ctx, miss.conv, miss.sender, miss.cmid, miss.ids); err != nil || found {
			t.Fatalf("%+v: %+v, found %v, %v; want none", miss, m, found, err)
		}
	}

	// A conversation of realistic size, so the plan is the one a real
	// read model gets: on four rows any index, or none, is as good.
	if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "messages"}.Sanitize()+`
		(conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq)
		SELECT 'c1', 1000 + i, 'mf' || i, 'u' || (i % 50), 'kf' || i, 'filler', now(), 1000 + i FROM generate_series(1, 5000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE `+pgx.Identifier{schema, "messages"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	var plan []string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) `+store.SentMessageSQL(), "c1", []string{"m3", "mf7"}, "bob", "km3")
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "_conversation_id_message_id_key on ") {
		t.Fatalf("the plan does not read the (conversation_id, message_id) key:\n%s", text)
	}
}

// Edits and deletes find their message by (conversation_id, message_id), and
// the check for folded events by a unique key matched in full, on a fresh
// schema too: a batch's statements are planned once per
// connection as generic plans, often while the tables are still empty, and
// the plan then lasts as long as the connection. With every index that
// starts with conversation_id priced alike there, the planner used to pick
// messages_by_client_msg_id (migration 0011 reorders it), matched only the
// conversation and filtered all of its messages for every edit.
func TestMessageWritesUseTheMessageKey(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	store := projections.NewStore(pool, freshSchema(t, pool), testTopic)
	settings, stmts := store.MessageWriteSQL()
	for name, st := range stmts {
		sql, index := st[0], st[1]
		var plan []string
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, settings); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `PREPARE w AS `+sql); err != nil {
				return err
			}
			n := len(regexp.MustCompile(`\$\d+\b`).FindAllString(sql, -1))
			args := strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
			rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) EXECUTE w(`+args+`)`)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			if err == nil {
				_, err = tx.Exec(ctx, `DEALLOCATE w`)
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		scans := 0
		for _, line := range plan {
			if !strings.Contains(line, "Scan using") {
				continue
			}
			scans++
			if !strings.Contains(line, index+" on ") {
				t.Errorf("%s finds its rows through another index than *%s:\n%s", name, index, line)
			}
		}
		if scans == 0 {
			t.Errorf("%s: no index scan of messages in the plan:\n%s", name, strings.Join(plan, "\n"))
		}
	}
}
