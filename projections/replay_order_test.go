package projections

import (
	"slices"
	"testing"
)

// The GIN index goes first, the B-trees after it in the order given.
func TestLongestFirst(t *testing.T) {
	idx := []deferredIndex{
		{name: "a", create: "CREATE INDEX a ON s.events USING btree (type)"},
		{name: "b", create: "CREATE UNIQUE INDEX b ON s.messages USING btree (conversation_id, seq)"},
		{name: "search", create: "CREATE INDEX search ON s.messages USING gin (to_tsvector('s.parley_search'::regconfig, body))"},
		{name: "c", create: "ALTER TABLE s.messages ADD CONSTRAINT c PRIMARY KEY (conversation_id, seq)"},
	}
	var got []string
	for _, d := range longestFirst(idx) {
		got = append(got, d.name)
	}
	if want := []string{"search", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if idx[0].name != "a" {
		t.Error("longestFirst reordered its argument")
	}
}
