package fanoutbus

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// A user's route shard is FNV-1a of the id mod 16, as it has been since
// routes were sharded: live routes written by older nodes are found.
func TestRouteShardKeepsTheLayout(t *testing.T) {
	b, err := New(nil, Config{Prefix: "p"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		u := "u" + strconv.Itoa(i*7919)
		h := fnv.New32a()
		_, _ = h.Write([]byte(u))
		want := "p:routes:{r" + strconv.Itoa(int(h.Sum32()%routeShards)) + "}"
		if got := b.routesKey(u); got != want {
			t.Fatalf("%s: key %s, want %s", u, got, want)
		}
	}
	if got := b.routesKey(""); got != "p:routes:{r5}" { // FNV-1a of nothing: 2166136261 % 16
		t.Fatalf("empty id: %s", got)
	}
}
