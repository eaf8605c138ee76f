package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// knownLog is a small log with fixed timestamps whose analytics are worked
// out by hand in TestAnalyticsViews.
func knownLog() []projections.Record {
	at := func(day, h, m, s int) time.Time { return time.Date(2026, 1, day, h, m, s, 0, time.UTC) }
	var recs []projections.Record
	next := map[int32]int64{}
	add := func(part int32, conv, typ, actor string, t time.Time, payload any) {
		data, _ := json.Marshal(payload)
		recs = append(recs, projections.Record{Partition: part, Offset: next[part], Event: domain.Event{
			ID: fmt.Sprintf("e_%d_%d", part, next[part]), Type: typ, ConversationID: conv, Actor: actor, At: t, Data: data}})
		next[part]++
	}
	send := func(part int32, conv, user, id string, t time.Time, replyTo ...string) {
		add(part, conv, domain.EvMessageSent, user, t, domain.MessageSent{MessageID: id, ClientMsgID: "k" + id, Body: "body " + id,
			ReplyTo: strings.Join(replyTo, "")})
	}
	// c1, partition 0: seq = domain.SeqOf(offset).
	add(0, "c1", domain.EvConversationCreated, "alice", at(5, 10, 0, 0),
		domain.ConversationCreated{Kind: "group", Title: "alpha", Members: []string{"alice", "bob", "carol"}}) // seq 1
	send(0, "c1", "alice", "m1", at(5, 10, 1, 0))                                                                      // 2
	send(0, "c1", "bob", "m2", at(5, 10, 1, 30))                                                                       // 3: reply after 30 s
	send(0, "c1", "bob", "m3", at(5, 10, 2, 0))                                                                        // 4: same sender, no reply
	send(0, "c1", "alice", "m4", at(5, 10, 4, 0), "m2")                                                                // 5: reply after 120 s; replies to m2
	add(0, "c1", domain.EvReadMarked, "carol", at(5, 10, 5, 0), domain.ReadMarked{UpToSeq: 5})                         // 6
	add(0, "c1", domain.EvMessageEdited, "bob", at(5, 10, 6, 0), domain.MessageEdited{MessageID: "m3", Body: "fixed"}) // 7
	add(0, "c1", domain.EvMessageDeleted, "alice", at(5, 10, 7, 0), domain.MessageDeleted{MessageID: "m4"})            // 8
	add(0, "c1", domain.EvMemberJoined, "alice", at(6, 9, 0, 0), domain.MemberChanged{UserID: "dave"})                 // 9
	send(0, "c1", "dave", "m5", at(6, 9, 10, 0), "m4")                                                                 // 10: reply to m4 after 83160 s (and replies to it)
	add(0, "c1", domain.EvMemberLeft, "bob", at(6, 12, 0, 0), domain.MemberChanged{UserID: "bob"})                     // 11
	// c2, partition 1.
	add(1, "c2", domain.EvConversationCreated, "alice", at(5, 11, 0, 0),
		domain.ConversationCreated{Kind: "direct", Members: []string{"alice", "dave"}}) // 1
	send(1, "c2", "dave", "n1", at(5, 11, 0, 10))                                             // 2
	send(1, "c2", "alice", "n2", at(5, 11, 0, 40), "n1")                                      // 3: reply after 30 s
	add(1, "c2", domain.EvReadMarked, "dave", at(5, 11, 1, 0), domain.ReadMarked{UpToSeq: 3}) // 4
	// Reactions in c3, partition 2, so the figures of c1 and c2 stay.
	add(2, "c3", domain.EvConversationCreated, "erin", at(7, 8, 0, 0),
		domain.ConversationCreated{Kind: "group", Title: "gamma", Members: []string{"erin", "fred", "gina"}}) // 1
	send(2, "c3", "erin", "p1", at(7, 8, 1, 0)) // 2
	send(2, "c3", "fred", "p2", at(7, 8, 2, 0)) // 3
	react := func(typ, user, msg, emoji string, t time.Time) {
		add(2, "c3", typ, user, t, domain.Reaction{MessageID: msg, Emoji: emoji})
	}
	react(domain.EvReactionAdded, "fred", "p1", "👍", at(7, 8, 3, 0))
	react(domain.EvReactionAdded, "gina", "p1", "👍", at(7, 8, 4, 0))
	react(domain.EvReactionAdded, "gina", "p1", "🎉", at(7, 8, 5, 0))
	react(domain.EvReactionAdded, "erin", "p2", "👍", at(8, 9, 0, 0))
	react(domain.EvReactionRemoved, "gina", "p1", "🎉", at(8, 9, 1, 0))
	return recs
}

func TestAnalyticsViews(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	if err := pgstore.MigrateControl(ctx, dsn()); err != nil {
		t.Fatal(err)
	}
	schema := freshSchema(t, pool)
	analytics := projections.AnalyticsSchemaFor(schema)
	t.Cleanup(func() {
		dropSchemas(pool, analytics)
		_, _ = pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, schema)
	})
	store := projections.NewStore(pool, schema, testTopic)
	applyAll(t, store, knownLog(), 4)
	if _, err := projections.RegisterPointer(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(ctx, `DELETE FROM parley.presence_days WHERE name=$1`, schema) })
	for _, on := range []struct {
		users []string
		at    time.Time
	}{
		{[]string{"alice", "bob"}, time.Date(2026, 1, 5, 23, 59, 0, 0, time.UTC)},
		{[]string{"alice"}, time.Date(2026, 1, 6, 0, 1, 0, 0, time.UTC)},
		{[]string{"alice"}, time.Date(2026, 1, 6, 9, 0, 0, 0, time.UTC)}, // again that day: once
	} {
		if err := store.RecordOnline(ctx, on.users, on.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := projections.PointAnalytics(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	q := func(sql string) string {
		t.Helper()
		rows, err := pool.Query(ctx, strings.ReplaceAll(sql, "{a}", pgx.Identifier{analytics}.Sanitize()))
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			vals, err := r.Values()
			parts := make([]string, len(vals))
			for i, v := range vals {
				if tm, ok := v.(time.Time); ok {
					v = tm.UTC().Format("01-02")
				}
				parts[i] = fmt.Sprint(v)
			}
			return strings.Join(parts, " "), err
		})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return strings.Join(lines, "; ")
	}
	check := func(name, sql, want string) {
		t.Helper()
		if got := q(sql); got != want {
			t.Errorf("%s:\n got  %s\n want %s", name, got, want)
		}
	}
	check("messages per day per conversation",
		`SELECT day, conversation_id, messages, deleted, senders FROM {a}.messages_per_day ORDER BY day, conversation_id`,
		"01-05 c1 4 1 2; 01-05 c2 2 0 2; 01-06 c1 1 0 1; 01-07 c3 2 0 2")
	check("active users per day",
		`SELECT day, active_users, senders FROM {a}.active_users_per_day ORDER BY day`,
		"01-05 4 3; 01-06 3 1; 01-07 3 2; 01-08 2 0")
	check("replies",
		`SELECT conversation_id, message_id, replied_to_sender_id, reply_seconds FROM {a}.replies ORDER BY conversation_id, seq`,
		"c1 m2 alice 30; c1 m4 bob 120; c1 m5 alice 83160; c2 n2 dave 30; c3 p2 erin 60")
	check("median reply time per day",
		`SELECT day, replies, median_reply_seconds FROM {a}.reply_time_per_day ORDER BY day`,
		"01-05 3 30; 01-06 1 83160; 01-07 1 60")
	check("top conversations",
		`SELECT rank, conversation_id, messages, senders, members FROM {a}.top_conversations ORDER BY rank, conversation_id`,
		"1 c1 5 3 3; 2 c2 2 2 2; 2 c3 2 2 3")
	check("unread counts",
		`SELECT conversation_id, user_id, unread FROM {a}.unread_counts ORDER BY 1, 2`,
		"c1 alice 3; c1 carol 1; c1 dave 3; c2 alice 1; c2 dave 0; c3 erin 1; c3 fred 1; c3 gina 2")
	check("read cursors",
		`SELECT conversation_id, user_id, read_seq FROM {a}.read_cursors ORDER BY 1, 2`,
		"c1 carol 5; c2 dave 3")
	check("membership changes",
		`SELECT conversation_id, user_id, seq, change FROM {a}.membership_changes ORDER BY 1, 3, 2`,
		"c1 alice 1 joined; c1 bob 1 joined; c1 carol 1 joined; c1 dave 9 joined; c1 bob 11 left; c2 alice 1 joined; c2 dave 1 joined; c3 erin 1 joined; c3 fred 1 joined; c3 gina 1 joined")
	check("members with join and leave times",
		`SELECT conversation_id, user_id, is_member, joined_at, left_at FROM {a}.members ORDER BY 1, 2`,
		"c1 alice true 01-05 <nil>; c1 bob false 01-05 01-06; c1 carol true 01-05 <nil>; c1 dave true 01-06 <nil>; c2 alice true 01-05 <nil>; c2 dave true 01-05 <nil>; c3 erin true 01-07 <nil>; c3 fred true 01-07 <nil>; c3 gina true 01-07 <nil>")
	check("messages with edits and tombstones",
		`SELECT message_id, body, edited_at IS NOT NULL, deleted FROM {a}.messages WHERE conversation_id='c1' ORDER BY seq`,
		"m1 body m1 false false; m2 body m2 false false; m3 fixed true false; m4  false true; m5 body m5 false false")
	check("explicit replies (reply_to)",
		`SELECT conversation_id, message_id, parent_id, parent_sender_id, response_seconds FROM {a}.thread_replies ORDER BY conversation_id, seq`,
		"c1 m4 m2 bob 150; c1 m5 m4 alice 83160; c2 n2 n1 dave 30")
	check("threads: replies at any depth, deepest chain, first reply",
		`SELECT conversation_id, root_id, replies, max_depth, first_reply_seconds FROM {a}.threads ORDER BY conversation_id`,
		"c1 m2 2 2 150; c2 n1 1 1 30")
	check("thread response time per day",
		`SELECT day, replies, median_response_seconds FROM {a}.thread_response_per_day ORDER BY day`,
		"01-05 2 90; 01-06 1 83160")
	check("users online per day (presence_days, not from the log)",
		`SELECT day, online_users FROM {a}.online_users_per_day ORDER BY day`,
		"01-05 2; 01-06 1")
	check("last seq per conversation",
		`SELECT conversation_id, last_seq, last_message_seq FROM {a}.conversations ORDER BY 1`,
		"c1 11 10; c2 4 3; c3 8 3")
	check("reactions, a removed one kept as not present",
		`SELECT conversation_id, message_id, user_id, emoji, present FROM {a}.reactions ORDER BY message_id, change_seq`,
		"c3 p1 fred 👍 true; c3 p1 gina 👍 true; c3 p1 gina 🎉 false; c3 p2 erin 👍 true")
	check("reactions per day",
		`SELECT day, added, removed, reactors FROM {a}.reactions_per_day ORDER BY day`,
		"01-07 3 0 2; 01-08 1 1 1")
	check("most reacted messages",
		`SELECT rank, message_id, sender_id, reactions, reactors FROM {a}.most_reacted_messages ORDER BY rank`,
		"1 p1 erin 2 2; 2 p2 fred 1 1")

	// The views follow the pointer: repointed at another schema, they show it.
	other := freshSchema(t, pool)
	applyAll(t, projections.NewStore(pool, other, testTopic), knownLog()[:4], 100)
	if _, err := pool.Exec(ctx, `UPDATE parley.read_model SET active_schema=$2 WHERE name=$1`, schema, other); err != nil {
		t.Fatal(err)
	}
	if err := projections.PointAnalytics(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	check("after repointing", `SELECT count(*) FROM {a}.messages`, "3")
	// Dropping the old schema leaves the views alone.
	dropSchemas(pool, schema)
	check("after dropping the old schema", `SELECT sum(messages)::int FROM {a}.top_conversations`, "3")
	if projections.AnalyticsSchemaFor("chat") != "analytics" {
		t.Fatal(`the default deployment's views belong in "analytics"`)
	}
}
