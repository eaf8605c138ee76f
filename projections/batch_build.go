package projections

import (
	"bytes"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/parley-chat/parley/domain"
)

// buildBatch reduces records (in log order per partition) to the rows of
// each statement (batch_rows.go). Every record yields an event_log row,
// except a message_sent folded into its messages row (messageSent); each
// event type adds its own rows below. Conversations' last seqs and
// memberships are reduced to one row per conversation and per (conversation,
// user), in the order they first appear.
//
// The writing store s (nil in benchmarks) lends its sentIDs (a message id
// it wrote at another seq is routed to event_log here, see sentIDs); in a
// replay's applier (s.rebuild), the last seqs are left to it
// (batchRows.deferredLast) instead of going to the statements.
func buildBatch(recs []Record, s *Store) *batchRows {
	return buildBatchAfter(recs, s, nil)
}

// buildBatchAfter is buildBatch for a batch that follows one not yet
// committed, which writes the message ids pending (Pipeline).
func buildBatchAfter(recs []Record, s *Store, pending []sentID) *batchRows {
	b := &batchBuilder{
		members:   map[memberKey]int{},
		convs:     map[string]int{},
		deletedAt: map[string]int64{},
	}
	if len(pending) > 0 {
		b.batchIDs = make(map[msgKey]int64, len(pending))
		for _, id := range pending {
			b.batchIDs[id.key] = id.seq
		}
	}
	deferLast := false
	if s != nil {
		b.ids, b.schema, deferLast = s.ids, s.Schema(), s.rebuild != nil
	}
	b.rows.eventLog.hint = len(recs)
	for i := range recs {
		b.record(&recs[i].Event, recs[i].Seq())
	}
	// Edits after a delete of the same batch are dropped, as a sequential
	// apply would drop them; so the result does not depend on batch bounds.
	for i := range recs {
		if recs[i].Event.Type == domain.EvMessageEdited {
			b.messageEdited(&recs[i].Event, recs[i].Seq())
		}
	}
	b.rows.unindexable = b.unindexable
	for _, m := range b.memberRows {
		b.rows.members.add(m)
	}
	if deferLast {
		b.rows.deferredLast = b.lastSeqRows
		return &b.rows
	}
	for _, c := range b.lastSeqRows {
		b.rows.lastSeq.add(c)
	}
	return &b.rows
}

type memberKey struct{ c, u string }

// batchBuilder is the state of one buildBatch.
type batchBuilder struct {
	rows        batchRows
	members     map[memberKey]int // index in memberRows
	memberRows  []memberRow
	convs       map[string]int // index in lastSeqRows
	lastSeqRows []lastSeqRow
	deletedAt   map[string]int64 // message id -> seq of its delete in this batch
	ids         *sentIDs
	schema      string
	batchIDs    map[msgKey]int64 // the message ids of this batch so far
	scratch     []byte           // foldable's encoding
	unindexable error            // keyFits's first refusal
}

// keyFits notes a key too long for the B-tree indexes that hold it:
// Postgres refuses an index entry over about 2.7 kB, but a replay builds
// some indexes after the rows (replay_indexes.go), where such a row would
// fail the index instead of its event. Refused here, in Go, the event is
// poison the same way live and in a replay, and is set aside by both.
// Commands bound ids to domain.MaxIDLen: only a foreign or an older
// producer writes longer ones.
func (b *batchBuilder) keyFits(field, v string) {
	if len(v) > maxKeyBytes && b.unindexable == nil {
		b.unindexable = unindexableError{field: field, n: len(v)}
	}
}

// repeated reports whether message id of conversation c was written at
// an earlier seq than seq (by a committed batch, or earlier in this one):
// a duplicate produce. Otherwise it notes the id as written at seq. An id
// remembered at this very seq (the record applied again, after its offsets
// were lost) is not trusted: only the database knows whether its row is
// still there (a restore may have taken it), so it goes to the insert, whose
// unique index decides. Nor is one remembered at a later seq: the store
// met only the duplicate (another process wrote the original), and this is
// the original applied again.
func (b *batchBuilder) repeated(c, id string, seq int64) bool {
	k := b.ids.key(c, id)
	if at, ok := b.ids.seqOf(b.schema, k); ok && at < seq {
		return true
	}
	if b.batchIDs == nil {
		b.batchIDs = map[msgKey]int64{}
	}
	if at, ok := b.batchIDs[k]; ok && at < seq {
		return true
	}
	b.batchIDs[k] = seq
	b.rows.newIDs = append(b.rows.newIDs, sentID{k, seq})
	return false
}

// record adds the rows of one event.
func (b *batchBuilder) record(e *domain.Event, seq int64) {
	b.keyFits("conversation_id", e.ConversationID)
	last := b.lastSeq(e.ConversationID)
	last.seq, last.at = seq, e.At
	if e.Type == domain.EvMessageSent && b.messageSent(e, seq) {
		return
	}
	b.rows.eventLog.add(eventRowOf(e, seq))
	switch e.Type {
	case domain.EvConversationCreated:
		b.conversationCreated(e, seq)
	case domain.EvMemberJoined:
		b.memberJoined(e, seq)
	case domain.EvMemberLeft:
		b.memberLeft(e, seq)
	case domain.EvMessageDeleted:
		b.messageDeleted(e, seq)
	case domain.EvReadMarked:
		b.readMarked(e, seq)
	case domain.EvReactionAdded, domain.EvReactionRemoved:
		b.reaction(e, seq)
	}
	// domain.EvMessageEdited: once every delete of the batch is known
	// (buildBatch).
}

// An event whose payload does not decode keeps its event_log row and its
// conversation's last seq, and writes nothing else.

func (b *batchBuilder) conversationCreated(e *domain.Event, seq int64) {
	var p domain.ConversationCreated
	if e.Payload(&p) != nil {
		return
	}
	b.rows.conversations.add(conversationRow{id: e.ConversationID, kind: p.Kind, title: p.Title, by: e.Actor, at: e.At, seq: seq})
	for _, u := range p.Members {
		b.join(e.ConversationID, u, seq, e.At)
	}
}

func (b *batchBuilder) memberJoined(e *domain.Event, seq int64) {
	var p domain.MemberChanged
	if e.Payload(&p) != nil {
		return
	}
	b.join(e.ConversationID, p.UserID, seq, e.At)
}

func (b *batchBuilder) memberLeft(e *domain.Event, seq int64) {
	var p domain.MemberChanged
	if e.Payload(&p) != nil {
		return
	}
	b.leave(e.ConversationID, p.UserID, seq, e.At)
}

// messageSent adds the message's row and reports whether the event is
// folded into it (migration 0010): only when the row rebuilds the payload
// exactly (foldable), so the events view returns what was logged. A folded
// event is kept aside for a duplicate produce, whose row the messages
// insert skips (Store.writeTx).
func (b *batchBuilder) messageSent(e *domain.Event, seq int64) bool {
	var p domain.MessageSent
	if e.Payload(&p) != nil {
		return false
	}
	if b.ids != nil && b.repeated(e.ConversationID, p.MessageID, seq) {
		// What the messages insert's ON CONFLICT would skip: the
		// duplicate's event stays in event_log, as writeUnfolded would
		// write it.
		b.lastSeq(e.ConversationID).msg = seq
		return false
	}
	b.keyFits("reply_to", p.ReplyTo)
	row := messageRow{c: e.ConversationID, seq: seq, id: p.MessageID, sender: e.Actor,
		cmid: p.ClientMsgID, body: p.Body, at: e.At, reply: p.ReplyTo}
	folded := b.foldable(e, &p)
	if folded {
		row.eventID = e.ID
		b.rows.folded = append(b.rows.folded, foldedEvent{e: e, seq: seq, messageID: p.MessageID})
	}
	b.rows.messages.add(row)
	b.lastSeq(e.ConversationID).msg = seq
	return folded
}

// foldable: the payload is exactly what the server encodes for p, so the
// events view's jsonb_build_object over the row equals the logged data.
// The encoding is json.Marshal's (same flags), into the builder's buffer.
func (b *batchBuilder) foldable(e *domain.Event, p *domain.MessageSent) bool {
	var err error
	b.scratch, err = json.Append(b.scratch[:0], p, json.EscapeHTML|json.SortMapKeys)
	return err == nil && bytes.Equal(b.scratch, e.Data)
}

func (b *batchBuilder) reaction(e *domain.Event, seq int64) {
	var p domain.Reaction
	if e.Payload(&p) != nil {
		return
	}
	b.rows.reactions.add(reactionRow{c: e.ConversationID, id: p.MessageID, u: e.Actor, emoji: p.Emoji,
		present: e.Type == domain.EvReactionAdded, seq: seq, at: e.At})
}

// messageDeleted keeps the first delete of a message in the batch.
func (b *batchBuilder) messageDeleted(e *domain.Event, seq int64) {
	var p domain.MessageDeleted
	if e.Payload(&p) != nil {
		return
	}
	if _, dup := b.deletedAt[p.MessageID]; dup {
		return
	}
	b.deletedAt[p.MessageID] = seq
	b.rows.deletes.add(deleteRow{id: p.MessageID, seq: seq, at: e.At, c: e.ConversationID})
}

// messageEdited drops an edit that follows a delete of its message in the
// batch.
func (b *batchBuilder) messageEdited(e *domain.Event, seq int64) {
	var p domain.MessageEdited
	if e.Payload(&p) != nil {
		return
	}
	if ds, ok := b.deletedAt[p.MessageID]; ok && ds < seq {
		return
	}
	b.rows.edits.add(editRow{id: p.MessageID, body: p.Body, seq: seq, at: e.At, c: e.ConversationID})
}

func (b *batchBuilder) readMarked(e *domain.Event, seq int64) {
	var p domain.ReadMarked
	if e.Payload(&p) != nil {
		return
	}
	b.rows.reads.add(readRow{c: e.ConversationID, u: e.Actor, up: domain.ClampRead(p.UpToSeq, seq), at: e.At, seq: seq})
}

// lastSeq is the row of conversation c's last seq, created (without a
// message) at its first event in the batch.
func (b *batchBuilder) lastSeq(c string) *lastSeqRow {
	i, ok := b.convs[c]
	if !ok {
		i = len(b.lastSeqRows)
		b.convs[c] = i
		b.lastSeqRows = append(b.lastSeqRows, lastSeqRow{id: c, msg: -1})
	}
	return &b.lastSeqRows[i]
}

// member is the row of (c, u)'s membership change in the batch, created
// (with no join, no leave) at its first change.
func (b *batchBuilder) member(c, u string) *memberRow {
	k := memberKey{c, u}
	i, ok := b.members[k]
	if !ok {
		i = len(b.memberRows)
		b.members[k] = i
		b.memberRows = append(b.memberRows, memberRow{c: c, u: u, js: -1, ls: -1, cs: -1})
	}
	return &b.memberRows[i]
}

func (b *batchBuilder) join(c, u string, seq int64, at time.Time) {
	m := b.member(c, u)
	if seq > m.js {
		m.js, m.jat = seq, at
	}
	if seq > m.cs {
		m.cs, m.member = seq, true
	}
}

func (b *batchBuilder) leave(c, u string, seq int64, at time.Time) {
	m := b.member(c, u)
	if seq > m.ls {
		m.ls, m.lat = seq, at
	}
	if seq > m.cs {
		m.cs, m.member = seq, false
	}
}
