package projections

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// TestBatchArraysMatchTheirStatements: every statement of a batch gets one
// argument array per $n of its SQL, $1 first, each appended as the SQL array
// type the SQL casts it to and sent as the Go slice of that type, all of one
// length.
func TestBatchArraysMatchTheirStatements(t *testing.T) {
	b := buildBatch(benchRecords(t, 200), nil)
	var keys table[foldedKey]
	for _, f := range b.folded {
		keys.add(foldedKey{c: f.e.ConversationID, seq: f.seq, eventID: f.e.ID, messageID: f.messageID})
	}
	arrays := map[string]*arrays{
		"missing folded": &keys.arrays,
		"event_log":      &b.eventLog.arrays, "conversations": &b.conversations.arrays, "last_seq": &b.lastSeq.arrays,
		"members": &b.members.arrays, "messages": &b.messages.arrays, "edits": &b.edits.arrays,
		"deletes": &b.deletes.arrays, "reads": &b.reads.arrays,
	}
	// benchRecords edit and delete messages of other conversations (edits
	// before their send, to search): a message edited and one deleted
	// after their sends cover the rest.
	recs := benchRecords(t, 200)
	for i, ev := range []struct {
		typ string
		p   any
	}{
		{domain.EvMessageSent, domain.MessageSent{MessageID: "m_e", ClientMsgID: "k_e", Body: "a"}},
		{domain.EvMessageEdited, domain.MessageEdited{MessageID: "m_e", Body: "b"}},
		{domain.EvMessageSent, domain.MessageSent{MessageID: "m_d", ClientMsgID: "k_d", Body: "c"}},
		{domain.EvMessageDeleted, domain.MessageDeleted{MessageID: "m_d"}},
	} {
		e, err := domain.NewEvent(ev.typ, "c_0", "user_0", time.Now(), ev.p)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, Record{Partition: 0, Offset: int64(1000 + i), Event: e})
	}
	search := buildSearch(recs)
	arrays["search inserts"], arrays["search edits"], arrays["search deletes"] = &search.inserts.arrays, &search.edits.arrays, &search.tombs.arrays
	arrays["search edits before the send"], arrays["search deletes before the send"] = &search.preEdits.arrays, &search.preTombs.arrays
	if sts := search.statements(NewStore(nil, "s", "topic")); len(sts) != 5 {
		t.Fatalf("%d search statements, want 5: the records must cover every one", len(sts))
	}
	param := regexp.MustCompile(`\$(\d+)::(\w+)\[\]`)
	for _, guarded := range []bool{false, true} {
		sts := append(b.statements(NewStore(nil, "s", "topic"), guarded), stmt{name: "missing folded", sql: missingFoldedSQL, args: keys.args()})
		sts = append(sts, search.statements(NewStore(nil, "s", "topic"))...)
		if len(sts) != len(arrays) {
			t.Fatalf("guarded=%v: %d statements, want one per table (%d): the records must cover every table", guarded, len(sts), len(arrays))
		}
		for _, st := range sts {
			a := arrays[st.name]
			ps := param.FindAllStringSubmatch(st.sql, -1)
			if a == nil || len(ps) != len(a.cols) || len(ps) != len(st.args) {
				t.Errorf("%s: the SQL has %d array parameters, the rows give %d arrays", st.name, len(ps), len(st.args))
				continue
			}
			for i, p := range ps {
				if p[1] != strconv.Itoa(i+1) {
					t.Errorf("%s: parameter %d is $%s: the arrays must be $1, $2, ... in order", st.name, i+1, p[1])
				}
				if typ := a.cols[i].typ; p[2] != typ {
					t.Errorf("%s: $%d is %s[], the rows append %s", st.name, i+1, p[2], typ)
				}
				var n int
				switch v := st.args[i].(type) {
				case []string:
					n = len(v)
					if p[2] != "text" && p[2] != "jsonb" {
						t.Errorf("%s: $%d is %s[], sent as %T", st.name, i+1, p[2], v)
					}
				case []int64:
					n = len(v)
					if p[2] != "bigint" {
						t.Errorf("%s: $%d is %s[], sent as %T", st.name, i+1, p[2], v)
					}
				case []time.Time:
					n = len(v)
					if p[2] != "timestamptz" {
						t.Errorf("%s: $%d is %s[], sent as %T", st.name, i+1, p[2], v)
					}
				case []bool:
					n = len(v)
					if p[2] != "bool" {
						t.Errorf("%s: $%d is %s[], sent as %T", st.name, i+1, p[2], v)
					}
				default:
					t.Errorf("%s: $%d sent as %T", st.name, i+1, v)
				}
				if n != a.rows {
					t.Errorf("%s: $%d has %d values for %d rows", st.name, i+1, n, a.rows)
				}
			}
		}
	}
}
