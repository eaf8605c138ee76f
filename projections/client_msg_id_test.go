package projections_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/projections"
)

// The idempotent-send fallback finds the first message of a client_msg_id
// through its index: with sequential scans off, the plan reads one of the
// partitions of messages_by_client_msg_id.
func TestMessageByClientIDUsesItsIndex(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	schema := freshSchema(t, pool)
	store := projections.NewStore(pool, schema, testTopic)
	applyAll(t, store, knownLog(), 4)

	m, found, err := store.MessageByClientID(ctx, "c1", "bob", "km3")
	if err != nil || !found || m.MessageID != "m3" || m.Body != "fixed" {
		t.Fatalf("bob's km3 in c1: %+v, found %v, %v; want m3 with its edited body", m, found, err)
	}
	for _, miss := range [][3]string{{"c1", "alice", "km3"}, {"c2", "bob", "km3"}, {"c1", "bob", "km"}} {
		if m, found, err := store.MessageByClientID(ctx, miss[0], miss[1], miss[2]); err != nil || found {
			t.Fatalf("%v: %+v, found %v, %v; want none", miss, m, found, err)
		}
	}

	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		JOIN pg_namespace n ON n.oid = p.relnamespace
		WHERE n.nspname = $1 AND p.relname = 'messages_by_client_msg_id'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(parts) == 0 {
		t.Fatalf("partitions of messages_by_client_msg_id: %v, %v", parts, err)
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
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) `+store.MessageByClientIDSQL(), "c1", "bob", "km3")
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !slices.ContainsFunc(strings.Fields(text), func(w string) bool { return slices.Contains(parts, w) }) {
		t.Fatalf("the plan reads none of %v:\n%s", parts, text)
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
