package app

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		roles []string
		gogc  string
		want  int
	}{
		{[]string{"projector"}, "", projectorGCPercent},
		{[]string{"projector"}, "100", 0}, // the operator's GOGC wins
		{[]string{"gateway"}, "", 0},
		{[]string{"gateway", "fanout", "projector"}, "", 0}, // a gateway's heap is its connections
		{[]string{"fanout"}, "", 0},
	} {
		if got := gcPercentFor(c.roles, c.gogc); got != c.want {
			t.Errorf("gcPercentFor(%v, %q) = %d, want %d", c.roles, c.gogc, got, c.want)
		}
	}
}
