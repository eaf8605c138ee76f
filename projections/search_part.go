package projections

import (
	"github.com/parley-chat/parley/domain"
)

// Part is what of the read models a store's Apply writes. The live
// projector writes history (PartHistory) and the search consumer, a group
// of its own, writes message_search (PartSearch), each with its own
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
		ids: s.ids, rebuild: s.rebuild, part: p, OnSetAside: s.OnSetAside, OnGuardedRetry: s.OnGuardedRetry}
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

// searchRows are a batch reduced to the rows of the search statements:
// the rows of new messages, the latest edits, the tombstones. Each
// statement is guarded by the table's state (ON CONFLICT, tsv IS NOT
// NULL), so the result does not depend on batch bounds: a duplicate
// produce keeps the first row, an edit after the delete changes nothing,
// as in messages.
type searchRows struct {
	inserts     table[searchRow]
	edits       table[searchEditRow]
	tombs       table[searchKeyRow]
	unindexable error // a message's key is too long to index
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
		if m.sent {
			rows.inserts.add(searchRow{c: m.key.c, id: m.key.id, body: m.body, deleted: m.deleted})
		}
		if m.edited && !m.deleted {
			rows.edits.add(searchEditRow{c: m.key.c, id: m.key.id, body: m.edit})
		}
		if m.deleted {
			rows.tombs.add(searchKeyRow{c: m.key.c, id: m.key.id})
		}
	}
	return rows
}

// statements are the rows' statements in s's schema: inserts, then edits,
// then tombstones.
func (r *searchRows) statements(s *Store) []stmt {
	var out []stmt
	add := func(name, sql string, a *arrays) {
		if a.rows > 0 {
			out = append(out, stmt{name: name, sql: s.q(sql), args: a.args()})
		}
	}
	add("search inserts", searchInsertSQL, &r.inserts.arrays)
	add("search edits", searchEditSQL, &r.edits.arrays)
	add("search deletes", searchDeleteSQL, &r.tombs.arrays)
	return out
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
// sent), edited (the latest body), deleted.
type searchMsg struct {
	key                   searchKey
	sent, edited, deleted bool
	body, edit            string
}

func (b *searchBuilder) msg(c, id string) *searchMsg {
	k := searchKey{c: c, id: id}
	i, ok := b.seen[k]
	if !ok {
		if (len(c) > maxKeyBytes || len(id) > maxKeyBytes) && b.unindexable == nil {
			b.unindexable = unindexableError{field: "message key", n: len(c) + len(id)}
		}
		i = len(b.msgs)
		b.seen[k] = i
		b.msgs = append(b.msgs, searchMsg{key: k})
	}
	return &b.msgs[i]
}

// record folds one event into its message's entry. A second send of the
// same id (a duplicate produce) is the first's; an edit after the
// message's delete is dropped.
func (b *searchBuilder) record(e *domain.Event) {
	switch e.Type {
	case domain.EvMessageSent:
		var p domain.MessageSent
		if e.Payload(&p) != nil {
			return
		}
		if m := b.msg(e.ConversationID, p.MessageID); !m.sent && !m.edited && !m.deleted {
			m.sent, m.body = true, p.Body
		}
	case domain.EvMessageEdited:
		var p domain.MessageEdited
		if e.Payload(&p) != nil {
			return
		}
		if m := b.msg(e.ConversationID, p.MessageID); !m.deleted {
			m.edited, m.edit = true, p.Body
		}
	case domain.EvMessageDeleted:
		var p domain.MessageDeleted
		if e.Payload(&p) != nil {
			return
		}
		b.msg(e.ConversationID, p.MessageID).deleted = true
	}
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
