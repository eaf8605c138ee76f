package projections

import (
	"github.com/parley-chat/parley/domain"
)

// Part is what of the read models a store's Apply writes. The live
// projector applies each batch in two stages (Stages), history
// (PartHistory) and message_search (PartSearch), each with its own
// offsets, on its own backend: search indexing (to_tsvector and a GIN
// entry per message) was a quarter of a batch's time on one backend
// (docs/architecture.md, "Search, its own projection"). A replay, tests and
// tools write both in one transaction (PartAll, the zero value), so a
// rebuilt schema has both at the same offsets.
type Part uint8

const (
	PartAll     Part = iota // every read model, both offsets tables
	PartHistory             // every read model but message_search
	PartSearch              // message_search only, at search_offsets
)

// Writing returns a store like s whose Apply writes part p. It shares s's
// schema (a switch either finds moves both), sent ids and hooks.
func (s *Store) Writing(p Part) *Store {
	return &Store{pool: s.pool, topic: s.topic, schema: s.schema, name: s.name, pinned: s.pinned,
		ids: s.ids, rebuild: s.rebuild, part: p, OnSetAside: s.OnSetAside, OnGuardedRetry: s.OnGuardedRetry, OnRetry: s.OnRetry, OnGap: s.OnGap}
}

// offsetsTable is where the store's place in the log is kept.
func (s *Store) offsetsTable() string {
	if s.part == PartSearch {
		return "search_offsets"
	}
	return "projector_offsets"
}

func (s *Store) writesHistory() bool { return s.part != PartSearch }
func (s *Store) writesSearch() bool  { return s.part != PartHistory }

// searchRows are a batch reduced to the rows of the search statements.
// Each statement is guarded by the table's state (ON CONFLICT, tsv IS NOT
// NULL), so a batch applied twice changes nothing, a duplicate produce
// keeps the first row and an edit after the delete changes nothing, as in
// messages. An edit or delete that comes before its message's send in the
// batch (the send is a duplicate produce, or the original was lost to
// retention) changes only a row written before the batch, as messages'
// version guard has it: its statements run before the inserts.
type searchRows struct {
	preEdits    table[searchEditRow]
	preTombs    table[searchKeyRow]
	inserts     table[searchRow]
	edits       table[searchEditRow]
	tombs       table[searchKeyRow]
	unindexable error // a key the history part refuses too (keyFits)
}

// buildSearch reduces recs (records that continue the offsets, in log
// order per partition) to searchRows.
func buildSearch(recs []Record) *searchRows {
	b := searchBuilder{seen: map[searchKey]int{}}
	for i := range recs {
		b.record(&recs[i].Event)
	}
	rows := &searchRows{unindexable: b.unindexable}
	for _, m := range b.msgs {
		k := searchKeyRow{c: m.key.c, id: m.key.id}
		switch {
		case m.pre.deleted:
			rows.preTombs.add(k)
		case m.pre.edited:
			rows.preEdits.add(searchEditRow{c: k.c, id: k.id, body: m.pre.body})
		}
		if m.sent {
			rows.inserts.add(searchRow{c: k.c, id: k.id, body: m.body, deleted: m.post.deleted})
		}
		switch {
		case m.post.deleted:
			rows.tombs.add(k)
		case m.post.edited:
			rows.edits.add(searchEditRow{c: k.c, id: k.id, body: m.post.body})
		}
	}
	return rows
}

// statements are the rows' statements in s's schema, in the order above.
func (r *searchRows) statements(s *Store) []stmt {
	st := statements{s: s}
	st.add("search edits before the send", searchEditSQL, &r.preEdits.arrays)
	st.add("search deletes before the send", searchDeleteSQL, &r.preTombs.arrays)
	st.add("search inserts", searchInsertSQL, &r.inserts.arrays)
	st.add("search edits", searchEditSQL, &r.edits.arrays)
	st.add("search deletes", searchDeleteSQL, &r.tombs.arrays)
	return st.out
}

// searchBuilder reduces a batch to one entry per message, in the order
// the messages first appear.
type searchBuilder struct {
	seen        map[searchKey]int // index in msgs
	msgs        []searchMsg
	unindexable error
}

type searchKey struct{ c, id string }

// searchMsg is what a batch does to one message: sent (with the body as
// sent), and its edits and delete before the send (pre) and after it
// (post).
type searchMsg struct {
	key       searchKey
	sent      bool
	body      string
	pre, post searchChange
}

// searchChange is a message's latest edit and its delete.
type searchChange struct {
	edited, deleted bool
	body            string // the latest edit's
}

func (c *searchChange) edit(body string) {
	if !c.deleted {
		c.edited, c.body = true, body
	}
}

func (b *searchBuilder) msg(c, id string) *searchMsg {
	k := searchKey{c: c, id: id}
	i, ok := b.seen[k]
	if !ok {
		i = len(b.msgs)
		b.seen[k] = i
		b.msgs = append(b.msgs, searchMsg{key: k})
	}
	return &b.msgs[i]
}

// keyFits refuses what the history part's keyFits refuses (a conversation
// id, a reply_to too long to index), so both parts set the same events
// aside, and a replay, which writes both in one transaction, builds what
// they built.
func (b *searchBuilder) keyFits(field, v string) {
	if len(v) > maxKeyBytes && b.unindexable == nil {
		b.unindexable = unindexableError{field: field, n: len(v)}
	}
}

// record folds one event into its message's entry. A second send of the
// same id (a duplicate produce) is the first's; an edit after the
// message's delete is dropped.
func (b *searchBuilder) record(e *domain.Event) {
	b.keyFits("conversation_id", e.ConversationID)
	switch e.Type {
	case domain.EvMessageSent:
		var p domain.MessageSent
		if e.Payload(&p) != nil {
			return
		}
		b.keyFits("reply_to", p.ReplyTo)
		if m := b.msg(e.ConversationID, p.MessageID); !m.sent {
			m.sent, m.body = true, p.Body
		}
	case domain.EvMessageEdited:
		var p domain.MessageEdited
		if e.Payload(&p) != nil {
			return
		}
		b.msg(e.ConversationID, p.MessageID).change().edit(p.Body)
	case domain.EvMessageDeleted:
		var p domain.MessageDeleted
		if e.Payload(&p) != nil {
			return
		}
		b.msg(e.ConversationID, p.MessageID).change().deleted = true
	}
}

// change is where an edit or delete of m goes: before or after its send.
func (m *searchMsg) change() *searchChange {
	if m.sent {
		return &m.post
	}
	return &m.pre
}

// searchInsertSQL adds the messages sent; one deleted in the same batch
// gets its tombstone at once.
const searchInsertSQL = `INSERT INTO {s}.message_search (conversation_id, message_id, tsv)
		SELECT v.c, v.id, CASE WHEN v.deleted THEN NULL ELSE to_tsvector('{s}.parley_search'::regconfig, v.body) END
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) v(c, id, body, deleted)
		ON CONFLICT DO NOTHING`

type searchRow struct {
	c, id, body string
	deleted     bool
}

func (r searchRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.id)
	a.text(r.body)
	a.boolean(r.deleted)
}

// searchEditSQL indexes the latest body of each edited message that is not
// deleted.
const searchEditSQL = `UPDATE {s}.message_search s SET tsv = to_tsvector('{s}.parley_search'::regconfig, v.body)
		FROM unnest($1::text[], $2::text[], $3::text[]) v(c, id, body)
		WHERE s.conversation_id = v.c AND s.message_id = v.id AND s.tsv IS NOT NULL`

type searchEditRow struct{ c, id, body string }

func (r searchEditRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.id)
	a.text(r.body)
}

// searchDeleteSQL leaves a tombstone (tsv NULL): a duplicate produce of
// the message after its delete finds the row and adds nothing.
const searchDeleteSQL = `UPDATE {s}.message_search s SET tsv = NULL
		FROM unnest($1::text[], $2::text[]) v(c, id)
		WHERE s.conversation_id = v.c AND s.message_id = v.id AND s.tsv IS NOT NULL`

type searchKeyRow struct{ c, id string }

func (r searchKeyRow) appendTo(a *arrays) {
	a.text(r.c)
	a.text(r.id)
}
