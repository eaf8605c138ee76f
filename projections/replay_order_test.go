package projections

import (
	"slices"
	"testing"
)

// Constraints go first (each locks its table against the other builds),
// then the GIN index's builds, then the B-trees in the order given.
func TestBuildOrder(t *testing.T) {
	jobs := []buildJob{
		{name: "a", table: "events"},
		{name: "b", table: "messages"},
		{name: "search_p0", table: "messages", gin: true},
		{name: "c_p0", table: "messages", constraint: true},
		{name: "search_p1", table: "messages", gin: true},
	}
	var got []string
	for _, j := range buildOrder(jobs) {
		got = append(got, j.name)
	}
	if want := []string{"c_p0", "search_p0", "search_p1", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if jobs[0].name != "a" {
		t.Error("buildOrder reordered its argument")
	}
}
