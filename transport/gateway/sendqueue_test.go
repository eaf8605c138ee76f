package gateway

import (
	"strconv"
	"testing"
)

func TestSendQueue(t *testing.T) {
	q := newSendQueue(3)
	for i := range 3 {
		if !q.push([]byte(strconv.Itoa(i))) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if q.push([]byte("x")) {
		t.Fatal("push over the limit accepted")
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready signal after a push")
	}
	got := q.take(nil)
	if len(got) != 3 || string(got[0]) != "0" || string(got[2]) != "2" {
		t.Fatalf("take = %q, want 0 1 2 in order", got)
	}
	if len(q.take(nil)) != 0 {
		t.Fatal("second take not empty")
	}
	// The spare buffer is reused and does not alias what was taken.
	q.push([]byte("a"))
	spare := got[:0]
	next := q.take(spare)
	q.push([]byte("b"))
	if string(next[0]) != "a" || string(q.take(nil)[0]) != "b" {
		t.Fatal("spare buffer aliased a taken batch")
	}
}
