package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley/domain"
)

// Record is one event read from the log at partition and offset; its seq is
// derived from the offset. Invalid marks an envelope that could not be
// decoded. Hole > 0 says the log holds no record in [Offset-Hole, Offset)
// (the reader proved it: retention removed them before they were read).
type Record struct {
	Partition int32
	Offset    int64
	Hole      int64
	Event     domain.Event
	Invalid   bool
}

// ErrOffsetGap: a batch skips offsets of a partition that were never
// applied. Applying it would lose them for good, so it is refused whole.
var ErrOffsetGap = errors.New("batch skips unapplied offsets")

// Seq is the event's seq (domain.SeqOf its offset).
func (r Record) Seq() int64 { return domain.SeqOf(r.Offset) }

// Apply writes a batch of records in one transaction. Each statement covers
// the whole batch (multi-row, through unnest), and every write is guarded by
// event identity (seq) or by the partition offsets stored in the same
// transaction, so a batch applied twice changes nothing, and a batch split
// differently yields the same rows.
//
// The statements of a batch go to Postgres as one pipeline (one round trip),
// and the two inserts that cannot conflict once the offsets guard has passed
// (events by seq, messages by seq) check no index before inserting: see
// applyTx. Should one conflict anyway, the batch is rolled back and applied
// again with every insert guarded, so the rows are those of a guarded apply.
//
// An event whose data Postgres refuses (poison) is set aside instead of
// stopping the projection: see isolate.
func (s *Store) Apply(ctx context.Context, batch []Record) error {
	err := s.applyBatch(ctx, batch)
	if isPoison(err) {
		return s.isolate(ctx, batch, s.applyBatch)
	}
	return err
}

func (s *Store) applyBatch(ctx context.Context, batch []Record) error {
	err := s.apply(ctx, batch, false)
	if errors.Is(err, errConflict) {
		err = s.apply(ctx, batch, true)
	}
	return err
}

// guardedOnly remembers the schemas whose messages table predates UNIQUE
// (conversation_id, message_id) (read-model migrations before 0004): the
// fast path's ON CONFLICT names that key, so they are written guarded.
var guardedOnly sync.Map // schema name -> true

func (s *Store) apply(ctx context.Context, batch []Record, guarded bool) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return unavailable("begin", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// The batch goes to the schema the active pointer names now
	// (replay_active.go), so a replay can switch writers atomically; the
	// pointer and the offsets of that schema are read in one round trip.
	w, next, err := s.writeTargetOffsets(ctx, tx, batch)
	if err != nil {
		return err
	}
	if err := w.writeTx(ctx, tx, batch, next, guarded); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable("commit", err)
	}
	return nil
}

// errConflict: an unguarded insert met a row that exists already (a unique
// violation). The transaction is lost; the batch is applied again guarded.
var errConflict = errors.New("unguarded insert conflicts")

// applyTx writes a batch inside tx, into s's schema. Unguarded (the fast
// path), the events and messages inserts rely on the offsets guard for
// their primary keys: a record passes it once per schema, and (partition,
// offset) fixes (conversation_id, seq), since a conversation lives in one
// partition. Messages still collapse a repeated message id (a duplicate
// produce) through ON CONFLICT on (conversation_id, message_id) only. A
// unique violation returns errConflict; guarded, every insert is ON
// CONFLICT DO NOTHING.
func (s *Store) applyTx(ctx context.Context, tx pgx.Tx, batch []Record, guarded bool) error {
	next, err := s.lockOffsets(ctx, tx, batch, nil)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, tx, batch, next, guarded)
}

// writeTx writes the records of batch that continue the offsets next
// (read and locked in tx by lockOffsets) and advances the offsets, in one
// pipeline.
func (s *Store) writeTx(ctx context.Context, tx pgx.Tx, batch []Record, next map[int32]int64, guarded bool) error {
	if _, old := guardedOnly.Load(s.Schema()); old {
		guarded = true
	}
	fresh, err := continuing(batch, next)
	if err != nil {
		return err
	}
	var sts []stmt
	if len(fresh) > 0 {
		sts = buildBatch(fresh).statements(s, guarded)
	}
	sts = append(sts, s.storeOffsets(batch))
	b := &pgx.Batch{}
	for _, st := range sts {
		b.Queue(st.sql, st.args...)
	}
	res := tx.SendBatch(ctx, b)
	for _, st := range sts {
		if _, err := res.Exec(); err != nil {
			res.Close()
			if !guarded && isUniqueViolation(err) {
				return fmt.Errorf("%w: %s: %v", errConflict, st.name, err)
			}
			if !guarded && isNoConflictKey(err) {
				guardedOnly.Store(s.Schema(), true)
				return fmt.Errorf("%w: %s: %v", errConflict, st.name, err)
			}
			return fmt.Errorf("%w: apply %s: %w", domain.ErrUnavailable, st.name, err)
		}
	}
	if err := res.Close(); err != nil {
		return unavailable("apply", err)
	}
	return nil
}

// batchPartitions lists the partitions of batch.
func batchPartitions(batch []Record) []int32 {
	var ids []int32
	for _, r := range batch {
		if !slices.Contains(ids, r.Partition) {
			ids = append(ids, r.Partition)
		}
	}
	return ids
}

// offsetsQuery reads the stored offsets of partitions $2 and locks their
// rows, so two projectors cannot apply a partition at once.
func (s *Store) offsetsQuery() string {
	return s.q(`SELECT partition, next_offset FROM {s}.projector_offsets
		WHERE topic=$1 AND partition = ANY($2) ORDER BY partition FOR UPDATE`)
}

// lockOffsets returns the next offset of every partition of batch, locking
// their rows; next, if not nil, holds what offsetsQuery already read in tx.
// A partition without a row gets one at 0 first, so that FOR UPDATE has
// something to lock.
func (s *Store) lockOffsets(ctx context.Context, tx pgx.Tx, batch []Record, next map[int32]int64) (map[int32]int64, error) {
	ids := batchPartitions(batch)
	var err error
	if next == nil {
		next, err = s.readOffsets(ctx, tx, ids)
	}
	if err == nil && len(next) < len(ids) {
		if _, err = tx.Exec(ctx, s.q(`INSERT INTO {s}.projector_offsets (topic, partition, next_offset)
			SELECT $1, p, 0 FROM unnest($2::int[]) p ON CONFLICT DO NOTHING`), s.topic, ids); err == nil {
			next, err = s.readOffsets(ctx, tx, ids)
		}
	}
	if err != nil {
		return nil, unavailable("offsets", err)
	}
	return next, nil
}

func (s *Store) readOffsets(ctx context.Context, tx pgx.Tx, ids []int32) (map[int32]int64, error) {
	rows, err := tx.Query(ctx, s.offsetsQuery(), s.topic, ids)
	if err != nil {
		return nil, err
	}
	return collectOffsets(rows)
}

func collectOffsets(rows pgx.Rows) (map[int32]int64, error) {
	next := map[int32]int64{}
	var p int32
	var off int64
	_, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error { next[p] = off; return nil })
	return next, err
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isNoConflictKey: ON CONFLICT names a key the table does not have.
func isNoConflictKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P10"
}

// continuing keeps the records that continue each partition from next,
// dropping those applied before; a record beyond the next unapplied offset
// (not covered by a proven hole) fails the batch with ErrOffsetGap.
func continuing(batch []Record, next map[int32]int64) ([]Record, error) {
	out := batch[:0:0]
	for _, r := range batch {
		want := next[r.Partition]
		if r.Offset < want {
			continue
		}
		if r.Offset-r.Hole > want {
			return nil, fmt.Errorf("%w: partition %d continues at %d, the batch at %d", ErrOffsetGap, r.Partition, want, r.Offset)
		}
		next[r.Partition] = r.Offset + 1
		if !r.Invalid {
			out = append(out, r)
		}
	}
	return out, nil
}

// storeOffsets is the statement that advances the partitions' offsets past
// the batch, in the batch's transaction.
func (s *Store) storeOffsets(batch []Record) stmt {
	last := map[int32]int64{}
	for _, r := range batch {
		last[r.Partition] = max(last[r.Partition], r.Offset+1)
	}
	var ps []int32
	var offs []int64
	for p, o := range last {
		ps = append(ps, p)
		offs = append(offs, o)
	}
	return stmt{name: "store offsets", sql: s.q(`UPDATE {s}.projector_offsets o SET next_offset=GREATEST(o.next_offset, v.off)
		FROM unnest($2::int[], $3::bigint[]) v(p, off) WHERE o.topic=$1 AND o.partition=v.p`), args: []any{s.topic, ps, offs}}
}

type stmt struct {
	name string
	sql  string
	args []any
}

// cols collects parallel column arrays for one unnest statement.
type cols struct {
	s  [6][]string
	i  [3][]int64
	t  [2][]time.Time
	b  []bool
	tx []*time.Time
}

// batchRows is a batch reduced to the rows each table needs.
type batchRows struct {
	events, convs, msgs, edits, deletes, members, reads, lastSeq cols
}

type memberChange struct {
	joinSeq, leaveSeq int64
	joinAt, leaveAt   time.Time
	lastSeq           int64
	member            bool
}

func buildBatch(recs []Record) *batchRows {
	b := &batchRows{}
	type key struct{ c, u string }
	members := map[key]*memberChange{}
	var memberOrder []key
	member := func(c, u string) *memberChange {
		k := key{c, u}
		m := members[k]
		if m == nil {
			m = &memberChange{joinSeq: -1, leaveSeq: -1, lastSeq: -1}
			members[k] = m
			memberOrder = append(memberOrder, k)
		}
		return m
	}
	join := func(c, u string, seq int64, at time.Time) {
		m := member(c, u)
		if seq > m.joinSeq {
			m.joinSeq, m.joinAt = seq, at
		}
		if seq > m.lastSeq {
			m.lastSeq, m.member = seq, true
		}
	}
	leave := func(c, u string, seq int64, at time.Time) {
		m := member(c, u)
		if seq > m.leaveSeq {
			m.leaveSeq, m.leaveAt = seq, at
		}
		if seq > m.lastSeq {
			m.lastSeq, m.member = seq, false
		}
	}
	deletedAt := map[string]int64{} // message id -> delete seq in this batch
	lastSeq := map[string]int64{}
	lastAt := map[string]time.Time{}
	lastMsg := map[string]int64{}
	var convOrder []string
	for _, r := range recs {
		e, seq := r.Event, r.Seq()
		if _, ok := lastSeq[e.ConversationID]; !ok {
			convOrder = append(convOrder, e.ConversationID)
			lastMsg[e.ConversationID] = -1
		}
		lastSeq[e.ConversationID] = seq
		lastAt[e.ConversationID] = e.At
		ev := &b.events
		ev.s[0] = append(ev.s[0], e.ConversationID)
		ev.i[0] = append(ev.i[0], seq)
		ev.s[1] = append(ev.s[1], e.ID)
		ev.s[2] = append(ev.s[2], e.Type)
		ev.s[3] = append(ev.s[3], e.Actor)
		ev.t[0] = append(ev.t[0], e.At)
		ev.s[4] = append(ev.s[4], string(e.Data))
		switch e.Type {
		case domain.EvConversationCreated:
			var p domain.ConversationCreated
			if e.Payload(&p) != nil {
				continue
			}
			c := &b.convs
			c.s[0] = append(c.s[0], e.ConversationID)
			c.s[1] = append(c.s[1], p.Kind)
			c.s[2] = append(c.s[2], p.Title)
			c.s[3] = append(c.s[3], e.Actor)
			c.t[0] = append(c.t[0], e.At)
			c.i[0] = append(c.i[0], seq)
			for _, u := range p.Members {
				join(e.ConversationID, u, seq, e.At)
			}
		case domain.EvMemberJoined, domain.EvMemberLeft:
			var p domain.MemberChanged
			if e.Payload(&p) != nil {
				continue
			}
			if e.Type == domain.EvMemberJoined {
				join(e.ConversationID, p.UserID, seq, e.At)
			} else {
				leave(e.ConversationID, p.UserID, seq, e.At)
			}
		case domain.EvMessageSent:
			var p domain.MessageSent
			if e.Payload(&p) != nil {
				continue
			}
			m := &b.msgs
			m.s[0] = append(m.s[0], e.ConversationID)
			m.i[0] = append(m.i[0], seq)
			m.s[1] = append(m.s[1], p.MessageID)
			m.s[2] = append(m.s[2], e.Actor)
			m.s[3] = append(m.s[3], p.ClientMsgID)
			m.s[4] = append(m.s[4], p.Body)
			m.t[0] = append(m.t[0], e.At)
			lastMsg[e.ConversationID] = seq
		case domain.EvMessageDeleted:
			var p domain.MessageDeleted
			if e.Payload(&p) != nil {
				continue
			}
			if _, dup := deletedAt[p.MessageID]; !dup {
				deletedAt[p.MessageID] = seq
				d := &b.deletes
				d.s[0] = append(d.s[0], p.MessageID)
				d.s[1] = append(d.s[1], e.ConversationID)
				d.i[0] = append(d.i[0], seq)
				d.t[0] = append(d.t[0], e.At)
			}
		case domain.EvReadMarked:
			var p domain.ReadMarked
			if e.Payload(&p) != nil {
				continue
			}
			rd := &b.reads
			rd.s[0] = append(rd.s[0], e.ConversationID)
			rd.s[1] = append(rd.s[1], e.Actor)
			rd.i[0] = append(rd.i[0], domain.ClampRead(p.UpToSeq, seq))
			rd.i[1] = append(rd.i[1], seq)
			rd.t[0] = append(rd.t[0], e.At)
		}
	}
	// Edits after a delete of the same batch are dropped, as a sequential
	// apply would drop them; so the result does not depend on batch bounds.
	for _, r := range recs {
		if r.Event.Type != domain.EvMessageEdited {
			continue
		}
		var p domain.MessageEdited
		if r.Event.Payload(&p) != nil {
			continue
		}
		if ds, ok := deletedAt[p.MessageID]; ok && ds < r.Seq() {
			continue
		}
		ed := &b.edits
		ed.s[0] = append(ed.s[0], p.MessageID)
		ed.s[1] = append(ed.s[1], p.Body)
		ed.s[2] = append(ed.s[2], r.Event.ConversationID)
		ed.i[0] = append(ed.i[0], r.Seq())
		ed.t[0] = append(ed.t[0], r.Event.At)
	}
	for _, k := range memberOrder {
		m := members[k]
		mc := &b.members
		mc.s[0] = append(mc.s[0], k.c)
		mc.s[1] = append(mc.s[1], k.u)
		mc.b = append(mc.b, m.member)
		mc.i[0] = append(mc.i[0], m.joinSeq)
		mc.i[1] = append(mc.i[1], m.leaveSeq)
		mc.i[2] = append(mc.i[2], m.lastSeq)
		mc.t[0] = append(mc.t[0], m.joinAt)
		mc.t[1] = append(mc.t[1], m.leaveAt)
	}
	for _, c := range convOrder {
		ls := &b.lastSeq
		ls.s[0] = append(ls.s[0], c)
		ls.i[0] = append(ls.i[0], lastSeq[c])
		ls.i[1] = append(ls.i[1], lastMsg[c])
		ls.t[0] = append(ls.t[0], lastAt[c])
	}
	return b
}

func (b *batchRows) statements(s *Store, guarded bool) []stmt {
	// Unguarded, events and messages skip the pre-insert check of their
	// primary keys (see applyTx).
	eventsConflict, messagesConflict := "", "ON CONFLICT (conversation_id, message_id) DO NOTHING"
	if guarded {
		eventsConflict, messagesConflict = "ON CONFLICT DO NOTHING", "ON CONFLICT DO NOTHING"
	}
	var out []stmt
	add := func(name, sql string, n int, args ...any) {
		if n > 0 {
			out = append(out, stmt{name: name, sql: s.q(sql), args: args})
		}
	}
	e := b.events
	add("events", `INSERT INTO {s}.events (conversation_id, seq, event_id, type, actor, at, data)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
		`+eventsConflict, len(e.s[0]), e.s[0], e.i[0], e.s[1], e.s[2], e.s[3], e.t[0], e.s[4])
	c := b.convs
	add("conversations", `INSERT INTO {s}.conversations (conversation_id, kind, title, created_by, created_at, created_seq, last_seq, last_activity_at)
		SELECT v.id, v.kind, v.title, v.by, v.at, v.seq, v.seq, v.at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) v(id, kind, title, by, at, seq)
		ON CONFLICT DO NOTHING`, len(c.s[0]), c.s[0], c.s[1], c.s[2], c.s[3], c.t[0], c.i[0])
	ls := b.lastSeq
	add("last_seq", `UPDATE {s}.conversations c SET
		last_seq = GREATEST(c.last_seq, v.seq),
		last_activity_at = CASE WHEN v.seq > c.last_seq THEN v.at ELSE c.last_activity_at END,
		last_message_seq = CASE WHEN v.msg >= 0 AND v.msg > coalesce(c.last_message_seq, -1) THEN v.msg ELSE c.last_message_seq END
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[]) v(id, seq, msg, at)
		WHERE c.conversation_id = v.id`, len(ls.s[0]), ls.s[0], ls.i[0], ls.i[1], ls.t[0])
	m := b.members
	add("members", `INSERT INTO {s}.members AS o (conversation_id, user_id, is_member, joined_at, joined_seq, left_at, left_seq, change_seq)
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
		  change_seq = GREATEST(o.change_seq, excluded.change_seq)`,
		len(m.s[0]), m.s[0], m.s[1], m.b, m.i[0], m.i[1], m.i[2], m.t[0], m.t[1])
	ms := b.msgs
	add("messages", `INSERT INTO {s}.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq)
		SELECT v.c, v.seq, v.id, v.sender, v.cmid, v.body, v.at, v.seq
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
		  v(c, seq, id, sender, cmid, body, at)
		`+messagesConflict, len(ms.s[0]), ms.s[0], ms.i[0], ms.s[1], ms.s[2], ms.s[3], ms.s[4], ms.t[0])
	// Edits and deletes find their row by (conversation_id, message_id): the
	// unique key of the table partitioned by conversation (migration 0004),
	// so each lookup prunes to one partition.
	ed := b.edits
	add("edits", `UPDATE {s}.messages m SET body=v.body, edited_at=v.at, version_seq=v.seq
		FROM (SELECT DISTINCT ON (c, id) * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[]) v(id, body, seq, at, c)
		      ORDER BY c, id, seq DESC) v
		WHERE m.conversation_id=v.c AND m.message_id=v.id AND m.version_seq < v.seq AND NOT m.deleted`,
		len(ed.s[0]), ed.s[0], ed.s[1], ed.i[0], ed.t[0], ed.s[2])
	d := b.deletes
	add("deletes", `UPDATE {s}.messages m SET deleted=true, deleted_at=v.at, body='', version_seq=v.seq
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[]) v(id, seq, at, c)
		WHERE m.conversation_id=v.c AND m.message_id=v.id AND NOT m.deleted`, len(d.s[0]), d.s[0], d.i[0], d.t[0], d.s[1])
	rd := b.reads
	// Among reads up to the same seq the earliest (by event seq) sets
	// read_at, as a one-by-one apply would: batch bounds must not matter.
	add("reads", `UPDATE {s}.members m SET read_seq=v.up, read_at=v.at
		FROM (SELECT DISTINCT ON (c, u) * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[]) v(c, u, up, at, seq)
		      ORDER BY c, u, up DESC, seq) v
		WHERE m.conversation_id=v.c AND m.user_id=v.u AND v.up > m.read_seq`, len(rd.s[0]), rd.s[0], rd.s[1], rd.i[0], rd.t[0], rd.i[1])
	return out
}
