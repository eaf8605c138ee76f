package gateway

import (
	"context"
	"strconv"
	"testing"
)

func TestSendQueue(t *testing.T) {
	q := newSendQueue(3, 1<<20)
	for i := range 3 {
		ok, start := q.push([]byte(strconv.Itoa(i)))
		if !ok {
			t.Fatalf("push %d refused below the limit", i)
		}
		if start != (i == 0) {
			t.Fatalf("push %d: start %v; only the first push of an idle queue starts a writer", i, start)
		}
	}
	if ok, _ := q.push([]byte("x")); ok {
		t.Fatal("push over the limit accepted")
	}
	got := q.takeOrIdle(nil)
	if len(got) != 3 || string(got[0]) != "0" || string(got[2]) != "2" {
		t.Fatalf("take = %q, want 0 1 2 in order", got)
	}
	// The writer is still running until it finds the queue empty.
	if _, start := q.push([]byte("a")); start {
		t.Fatal("a push while the writer runs started another")
	}
	// The spare buffer is reused and does not alias what was taken.
	spare := got[:0]
	next := q.takeOrIdle(spare)
	if _, start := q.push([]byte("b")); start {
		t.Fatal("a push while the writer runs started another")
	}
	if string(next[0]) != "a" || string(q.takeOrIdle(nil)[0]) != "b" {
		t.Fatal("spare buffer aliased a taken batch")
	}
	if len(q.takeOrIdle(nil)) != 0 {
		t.Fatal("take of an empty queue returned frames")
	}
	// Found empty, the writer stopped: the next push must start one.
	if _, start := q.push([]byte("c")); !start {
		t.Fatal("a push after the writer stopped did not start one")
	}
	// take (the final flush) empties the queue whatever the writer state.
	if f := q.take(nil); len(f) != 1 || string(f[0]) != "c" {
		t.Fatalf("final take = %q", f)
	}
}

// The queue is bounded in bytes too: a few large replies to a client that
// does not read overflow it long before the frame count does.
func TestSendQueueBoundedInBytes(t *testing.T) {
	q := newSendQueue(256, 100)
	if ok, _ := q.push(make([]byte, 60)); !ok {
		t.Fatal("60 bytes of 100 refused")
	}
	if ok, _ := q.push(make([]byte, 41)); ok {
		t.Fatal("101 bytes of 100 accepted")
	}
	if ok, _ := q.push(make([]byte, 40)); !ok {
		t.Fatal("100 bytes of 100 refused")
	}
	q.takeOrIdle(nil)
	if ok, _ := q.push(make([]byte, 100)); !ok {
		t.Fatal("the taken frames still count")
	}
}

// waitRoom returns at once below half the bounds (a zero byte bound is no
// bound), waits while the queue is fuller, and ends with the connection.
func TestSendQueueWaitRoom(t *testing.T) {
	ctx := context.Background()
	q := newSendQueue(4, 0)
	q.push([]byte("a"))
	if err := q.waitRoom(ctx, nil); err != nil {
		t.Fatalf("room below half: %v", err)
	}
	q.push([]byte("b"))
	closed := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- q.waitRoom(ctx, closed) }()
	q.takeOrIdle(nil)
	if err := <-done; err != nil {
		t.Fatalf("after the writer took the frames: %v", err)
	}
	q.push([]byte("c"))
	q.push([]byte("d"))
	close(closed)
	if err := q.waitRoom(ctx, closed); err == nil {
		t.Fatal("waitRoom on a closed connection returned no error")
	}
}
