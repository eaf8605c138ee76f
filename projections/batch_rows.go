package projections

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/domain"
)

// The rows a batch writes, one type per statement. Each statement sends its
// rows as parallel arrays, $1 first, unnested by Postgres into a multi-row
// INSERT or UPDATE. A row type's appendTo is the one place that maps its
// fields to those arrays: it sits under the statement's SQL, calls one
// arrays method per $n in the SQL's order, and each method is named for the
// parameter's SQL array type ($2::bigint[] is bigint).
// TestBatchArraysMatchTheirStatements checks the types and the count
// against the SQL; the names of the fields follow the SQL's column names or
// unnest aliases, so a swap is visible to a reader.

// arrays are the argument arrays of one statement, built row by row.
type arrays struct {
	cols []column
	n    int // the parameter the row being appended is at, 0-based
	rows int
	hint int // the capacity of a new column (the expected rows), 0 if unknown
}

// column is one $n: the values of one field of every row, in the slice its
// SQL array type is encoded from.
type column struct {
	typ  string // the SQL array type, without []
	text []string
	i64  []int64
	at   []time.Time
	bool []bool
}

// col is the column of the next parameter, created with the first row.
func (a *arrays) col(typ string) *column {
	if a.n == len(a.cols) {
		a.cols = append(a.cols, column{typ: typ})
	}
	c := &a.cols[a.n]
	a.n++
	return c
}

func (a *arrays) text(v string) {
	c := a.col("text")
	if c.text == nil && a.hint > 0 {
		c.text = make([]string, 0, a.hint)
	}
	c.text = append(c.text, v)
}

// jsonb is sent as text; Postgres parses it.
func (a *arrays) jsonb(v string) {
	c := a.col("jsonb")
	if c.text == nil && a.hint > 0 {
		c.text = make([]string, 0, a.hint)
	}
	c.text = append(c.text, v)
}

func (a *arrays) bigint(v int64) {
	c := a.col("bigint")
	if c.i64 == nil && a.hint > 0 {
		c.i64 = make([]int64, 0, a.hint)
	}
	c.i64 = append(c.i64, v)
}

func (a *arrays) timestamptz(v time.Time) {
	c := a.col("timestamptz")
	if c.at == nil && a.hint > 0 {
		c.at = make([]time.Time, 0, a.hint)
	}
	c.at = append(c.at, v)
}

func (a *arrays) boolean(v bool) {
	c := a.col("bool")
	c.bool = append(c.bool, v)
}

// args are the statement's arguments, $1 first.
func (a *arrays) args() []any {
	out := make([]any, len(a.cols))
	for i, c := range a.cols {
		switch c.typ {
		case "text", "jsonb":
			out[i] = c.text
		case "bigint":
			out[i] = c.i64
		case "timestamptz":
			out[i] = c.at
		case "bool":
			out[i] = c.bool
		}
	}
	return out
}

// row is a row of one statement.
type row interface {
	appendTo(a *arrays)
}

// table collects the rows of one statement.
type table[R row] struct{ arrays }

func (t *table[R]) add(r R) {
	r.appendTo(&t.arrays)
	t.n = 0
	t.rows++
}

// batchRows is a batch reduced to the rows of each statement.
type batchRows struct {
	eventLog      table[eventRow]
	conversations table[conversationRow]
	lastSeq       table[lastSeqRow]
	members       table[memberRow]
	messages      table[messageRow]
	edits         table[editRow]
	deletes       table[deleteRow]
	reads         table[readRow]
	reactions     table[reactionRow]

	// folded are the message_sent events written only as messages rows, in
	// case the insert skips some (writeUnfolded).
	folded []foldedEvent
	// newIDs are the message ids the batch writes, for the store's sentIDs
	// once it commits.
	newIDs []sentID
	// deferredLast are the last seqs a replay's applier writes later
	// (replay_applier.go), in place of the last_seq statement.
	deferredLast []lastSeqRow
	// unindexable: a record's key is too long to index (keyFits); the
	// batch is not written.
	unindexable error
}

// written is what a batch's transaction wrote that its store keeps once it
// has committed (Store.committed).
type written struct {
	ids  []sentID
	last []lastSeqRow
	// prepared: the rows were those built ahead (Pipeline).
	prepared bool
}

// statements are the batch's statements, in the order the pipeline runs
// them: a conversation is inserted before its last seq is updated, members
// before their read cursors, messages before their edits and deletes.
// Unguarded, event_log and messages skip the pre-insert check of their
// primary keys (see applyTx).
func (b *batchRows) statements(s *Store, guarded bool) []stmt {
	eventsConflict, messagesConflict := "", "ON CONFLICT (conversation_id, message_id) DO NOTHING"
	if s.ids != nil { // repeats are routed by the builder (sent_ids.go)
		messagesConflict = ""
	}
	if guarded {
		eventsConflict, messagesConflict = "ON CONFLICT DO NOTHING", "ON CONFLICT DO NOTHING"
	}
	st := statements{s: s}
	add := st.add
	add("event_log", eventsSQL+eventsConflict, &b.eventLog.arrays)
	add("conversations", conversationsSQL, &b.conversations.arrays)
	add("last_seq", lastSeqSQL, &b.lastSeq.arrays)
	add("members", membersSQL, &b.members.arrays)
	if messagesConflict == "" { // every row is written, or the statement fails
		add("messages", messagesSQL, &b.messages.arrays)
	} else if b.messages.rows > 0 {
		st.out = append(st.out, stmt{name: "messages", sql: s.q(messagesSQL + messagesConflict + messagesReturning),
			args: b.messages.args(), skips: true})
	}
	add("edits", editsSQL, &b.edits.arrays)
	add("deletes", deletesSQL, &b.deletes.arrays)
	add("reads", readsSQL, &b.reads.arrays)
	add("reactions", reactionsSQL, &b.reactions.arrays)
	return st.out
}

// statements collects a batch's statements in s's schema.
type statements struct {
	s   *Store
	out []stmt
}

// add adds the statement sql over a's rows, named name; none when a has
// no rows.
func (st *statements) add(name, sql string, a *arrays) {
	if a.rows > 0 {
		st.out = append(st.out, stmt{name: name, sql: st.s.q(sql), args: a.args()})
	}
}

// foldedEvent is a message_sent event folded into its messages row.
type foldedEvent struct {
	e         *domain.Event
	seq       int64
	messageID string
}

// writeUnfolded writes to event_log the folded events without a messages
// row of their own: the messages insert (which returns the event ids of
// the rows it wrote) skipped them as a repeated message id, a duplicate
// produce that must still replay as logged. The candidates are checked by
// key first (missingFoldedSQL: a redelivered batch finds its rows), and
// only theirs payloads are sent; a batch without a repeat pays nothing.
func (b *batchRows) writeUnfolded(ctx context.Context, s *Store, tx pgx.Tx, inserted map[foldedAt]bool) error {
	var cands []foldedEvent
	var keys table[foldedKey]
	for _, f := range b.folded {
		if !inserted[foldedAt{f.e.ID, f.seq}] {
			cands = append(cands, f)
			keys.add(foldedKey{c: f.e.ConversationID, seq: f.seq, eventID: f.e.ID, messageID: f.messageID})
		}
	}
	if len(cands) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, s.q(missingFoldedSQL), keys.args()...)
	if err != nil {
		return err
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(missing) == 0 {
		return err
	}
	var t table[eventRow]
	for _, i := range missing {
		f := cands[i-1] // WITH ORDINALITY counts from 1
		t.add(eventRowOf(f.e, f.seq))
	}
	_, err = tx.Exec(ctx, s.q(eventsSQL+"ON CONFLICT DO NOTHING"), t.args()...)
	return err
}

// missingFoldedSQL: the folded events whose row is not in messages (by seq
// and event id), by their place in the arrays. The message id adds nothing
// to the match but makes both unique keys of messages match in full: the
// generic plan, often made on empty tables, cannot then pick one that
// matches the conversation only and filter all of its messages.
const missingFoldedSQL = `SELECT v.i FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY v(c, seq, eid, mid, i)
		WHERE NOT EXISTS (SELECT 1 FROM {s}.messages m
		  WHERE m.conversation_id = v.c AND m.seq = v.seq AND m.message_id = v.mid AND m.event_id = v.eid)`

type foldedKey struct {
	c         string
	seq       int64
	eventID   string
	messageID string
}

func (r foldedKey) appendTo(a *arrays) {
	a.text(r.c)
	a.bigint(r.seq)
	a.text(r.eventID)
	a.text(r.messageID)
}

// reactionsSQL applies each (message, user, emoji)'s latest change of the
// batch, unless the row holds a later one.
const reactionsSQL = `INSERT INTO {s}.reactions AS r (conversation_id, message_id, user_id, emoji, present, change_seq, changed_at)
		SELECT DISTINCT ON (c, id, u, e) c, id, u, e, present, seq, at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[], $7::timestamptz[])
		  v(c, id, u, e, present, seq, at)
		ORDER BY c, id, u, e, seq DESC
		ON CONFLICT (conversation_id, message_id, user_id, emoji) DO UPDATE
		SET present = EXCLUDED.present, change_seq = EXCLUDED.change_seq, changed_at = EXCLUDED.changed_at
		WHERE r.change_seq < EXCLUDED.change_seq`

type reactionRow struct {
	c, id, u, emoji string
	present         bool
	seq             int64
	at              time.Time
}

func (r reactionRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.id)
	a.text(r.u)
	a.text(r.emoji)
	a.boolean(r.present)
	a.bigint(r.seq)
	a.timestamptz(r.at)
}

// eventsSQL inserts the events not folded into messages; the conflict
// clause follows.
const eventsSQL = `INSERT INTO {s}.event_log (conversation_id, seq, event_id, type, actor, at, data)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
		`

type eventRow struct {
	conversationID string
	seq            int64
	eventID        string
	typ            string
	actor          string
	at             time.Time
	data           string
}

// eventRowOf is e's row at seq, as logged.
func eventRowOf(e *domain.Event, seq int64) eventRow {
	return eventRow{conversationID: e.ConversationID, seq: seq, eventID: e.ID, typ: e.Type,
		actor: e.Actor, at: e.At, data: string(e.Data)}
}

func (r eventRow) appendTo(a *arrays) {
	a.text(r.conversationID)
	a.bigint(r.seq)
	a.text(r.eventID)
	a.text(r.typ)
	a.text(r.actor)
	a.timestamptz(r.at)
	a.jsonb(r.data)
}

// conversationsSQL inserts a created conversation, its last seq at its
// creation.
const conversationsSQL = `INSERT INTO {s}.conversations (conversation_id, kind, title, created_by, created_at, created_seq, last_seq, last_activity_at)
		SELECT v.id, v.kind, v.title, v.by, v.at, v.seq, v.seq, v.at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) v(id, kind, title, by, at, seq)
		ON CONFLICT DO NOTHING`

type conversationRow struct {
	id    string
	kind  string
	title string
	by    string
	at    time.Time
	seq   int64
}

func (r conversationRow) appendTo(a *arrays) {
	a.text(r.id)
	a.text(r.kind)
	a.text(r.title)
	a.text(r.by)
	a.timestamptz(r.at)
	a.bigint(r.seq)
}

// lastSeqSQL moves a conversation's last seq (and last message seq) forward
// to the batch's last event (and message) of it.
const lastSeqSQL = `UPDATE {s}.conversations c SET
		last_seq = GREATEST(c.last_seq, v.seq),
		last_activity_at = CASE WHEN v.seq > c.last_seq THEN v.at ELSE c.last_activity_at END,
		last_message_seq = CASE WHEN v.msg >= 0 AND v.msg > coalesce(c.last_message_seq, -1) THEN v.msg ELSE c.last_message_seq END
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[]) v(id, seq, msg, at)
		WHERE c.conversation_id = v.id`

type lastSeqRow struct {
	id  string
	seq int64
	msg int64 // -1: no message in the batch
	at  time.Time
}

func (r lastSeqRow) appendTo(a *arrays) {
	a.text(r.id)
	a.bigint(r.seq)
	a.bigint(r.msg)
	a.timestamptz(r.at)
}

// membersSQL upserts the batch's net membership change of each (conversation,
// user): its latest join, its latest leave, and which of them came last.
const membersSQL = `INSERT INTO {s}.members AS o (conversation_id, user_id, is_member, joined_at, joined_seq, left_at, left_seq, change_seq)
		SELECT v.c, v.u, v.member,
		  CASE WHEN v.js >= 0 THEN v.jat END, NULLIF(v.js, -1),
		  CASE WHEN v.ls >= 0 THEN v.lat END, NULLIF(v.ls, -1), v.cs
		FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[])
		  v(c, u, member, js, ls, cs, jat, lat)
		ON CONFLICT (conversation_id, user_id) DO UPDATE SET
		  is_member  = CASE WHEN excluded.change_seq > o.change_seq THEN excluded.is_member ELSE o.is_member END,
		  joined_at  = CASE WHEN excluded.joined_seq > coalesce(o.joined_seq, -1) THEN excluded.joined_at ELSE o.joined_at END,
		  joined_seq = GREATEST(o.joined_seq, excluded.joined_seq),
		  left_at    = CASE WHEN excluded.left_seq > coalesce(o.left_seq, -1) THEN excluded.left_at ELSE o.left_at END,
		  left_seq   = GREATEST(o.left_seq, excluded.left_seq),
		  change_seq = GREATEST(o.change_seq, excluded.change_seq)`

type memberRow struct {
	c      string
	u      string
	member bool
	js     int64 // the latest join's seq, -1: none in the batch
	ls     int64 // the latest leave's seq, -1: none in the batch
	cs     int64 // the latest change's seq
	jat    time.Time
	lat    time.Time
}

func (r memberRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.u)
	a.boolean(r.member)
	a.bigint(r.js)
	a.bigint(r.ls)
	a.bigint(r.cs)
	a.timestamptz(r.jat)
	a.timestamptz(r.lat)
}

// messagesSQL inserts sent messages; the conflict clause follows.
// event_id is NULL for a message whose event stays in event_log.
const messagesSQL = `INSERT INTO {s}.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq, reply_to, event_id)
		SELECT v.c, v.seq, v.id, v.sender, v.cmid, v.body, v.at, v.seq, NULLIF(v.reply, ''), NULLIF(v.eid, '')
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[])
		  v(c, seq, id, sender, cmid, body, at, reply, eid)
		`

// messagesReturning follows the conflict clause: the event ids and seqs of the
// folded rows written, so a skipped one is known (writeUnfolded).
const messagesReturning = ` RETURNING event_id, seq`

type messageRow struct {
	c       string
	seq     int64
	id      string
	sender  string
	cmid    string
	body    string
	at      time.Time
	reply   string // "" for none (NULL in the table)
	eventID string // "" when the event is not folded (NULL in the table)
}

func (r messageRow) appendTo(a *arrays) {
	a.text(r.c)
	a.bigint(r.seq)
	a.text(r.id)
	a.text(r.sender)
	a.text(r.cmid)
	a.text(r.body)
	a.timestamptz(r.at)
	a.text(r.reply)
	a.text(r.eventID)
}

// Edits and deletes find their row by (conversation_id, message_id): the
// unique key of the table partitioned by conversation (migration 0004), so
// each lookup prunes to one partition.

// editsSQL applies the latest edit of each message.
// sent_body keeps the body as sent, which the events view's message_sent
// shows (migration 0010).
const editsSQL = `UPDATE {s}.messages m SET sent_body=coalesce(m.sent_body, m.body), body=v.body, edited_at=v.at, version_seq=v.seq
		FROM (SELECT DISTINCT ON (c, id) * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[]) v(id, body, seq, at, c)
		      ORDER BY c, id, seq DESC) v
		WHERE m.conversation_id=v.c AND m.message_id=v.id AND m.version_seq < v.seq AND NOT m.deleted`

type editRow struct {
	id   string
	body string
	seq  int64
	at   time.Time
	c    string
}

func (r editRow) appendTo(a *arrays) {
	a.text(r.id)
	a.text(r.body)
	a.bigint(r.seq)
	a.timestamptz(r.at)
	a.text(r.c)
}

const deletesSQL = `UPDATE {s}.messages m SET deleted=true, deleted_at=v.at, sent_body=coalesce(m.sent_body, m.body), body='', version_seq=v.seq
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[]) v(id, seq, at, c)
		WHERE m.conversation_id=v.c AND m.message_id=v.id AND NOT m.deleted`

type deleteRow struct {
	id  string
	seq int64
	at  time.Time
	c   string
}

func (r deleteRow) appendTo(a *arrays) {
	a.text(r.id)
	a.bigint(r.seq)
	a.timestamptz(r.at)
	a.text(r.c)
}

// readsSQL moves read cursors forward. Among reads up to the same seq the
// earliest (by event seq) sets read_at, as a one-by-one apply would: batch
// bounds must not matter.
const readsSQL = `UPDATE {s}.members m SET read_seq=v.up, read_at=v.at
		FROM (SELECT DISTINCT ON (c, u) * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[]) v(c, u, up, at, seq)
		      ORDER BY c, u, up DESC, seq) v
		WHERE m.conversation_id=v.c AND m.user_id=v.u AND v.up > m.read_seq`

type readRow struct {
	c   string
	u   string
	up  int64 // the cursor, clamped below the read event's own seq
	at  time.Time
	seq int64
}

func (r readRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.u)
	a.bigint(r.up)
	a.timestamptz(r.at)
	a.bigint(r.seq)
}
