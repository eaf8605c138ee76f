package projections

import (
	"slices"
	"testing"
)

// Constraints go first (each locks its table against the other builds),
// then the GIN index, then the B-trees in the order given.
func TestBuildOrder(t *testing.T) {
	idx := []deferredIndex{
		{name: "a", create: "CREATE INDEX a ON s.events USING btree (type)"},
		{name: "b", create: "CREATE UNIQUE INDEX b ON s.messages USING btree (conversation_id, seq)"},
		{name: "search", create: "CREATE INDEX search ON s.messages USING gin (to_tsvector('s.parley_search'::regconfig, body))"},
		{name: "c", create: "ALTER TABLE s.messages ADD CONSTRAINT c PRIMARY KEY (conversation_id, seq)"},
	}
	var got []string
	for _, d := range buildOrder(idx) {
		got = append(got, d.name)
	}
	if want := []string{"c", "search", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if idx[0].name != "a" {
		t.Error("buildOrder reordered its argument")
	}
}
