package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func syncOf(reads *fakeReads) *Service { return &Service{Read: reads} }

// The whole resume, in order: every listed conversation is held before any
// read-model query, the initial hold ends, each conversation replays what
// is after the client's position and lets its pushes through, and the
// positions answered are the read model's or the client's newest.
func TestSyncReplaysInOrderAfterHolding(t *testing.T) {
	reads := &fakeReads{t: t,
		seqs:      map[string][]int64{"a": {1, 2, 3}, "b": {1, 2}},
		positions: map[string]int64{"a": 3, "b": 2, "c": 7},
	}
	st := newFakeSession()
	st.last["c"] = 9 // a live push newer than the read model
	got, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"b": 0, "a": 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hold on", "replay a 1", "replay b 0", "release",
		"replay a 1", "emit a 2", "emit a 3", "caught up a",
		"replay b 0", "emit b 1", "emit b 2", "caught up b"}
	if !slices.Equal(st.calls, want) {
		t.Errorf("calls\n got %q\nwant %q", st.calls, want)
	}
	if wantPos := map[string]int64{"a": 3, "b": 2, "c": 9}; !maps.Equal(got, wantPos) {
		t.Errorf("positions %v, want %v", got, wantPos)
	}
}

// Live pushes dropped during a replay (the paused buffer was full): the
// replay goes on from where the stream is until it has caught up.
func TestSyncReplaysOnAfterDroppedPushes(t *testing.T) {
	reads := &fakeReads{t: t, seqs: map[string][]int64{"a": {1, 2, 11, 12, 25}}}
	st := newFakeSession()
	st.behind["a"] = 1 // the first CaughtUp finds pushes dropped
	if _, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"a": 0}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"hold on", "replay a 0", "release", "replay a 0", "emit a 1", "emit a 2", "emit a 11", "emit a 12", "emit a 25",
		"behind a", "caught up a"}
	if !slices.Equal(st.calls, want) {
		t.Errorf("calls\n got %q\nwant %q", st.calls, want)
	}
	st = newFakeSession()
	st.behind["a"] = 1
	reads.seqs["a"] = []int64{1, 30}
	if _, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"a": 0}}); err != nil {
		t.Fatal(err)
	}
	// The second pass starts at Last (30+10): nothing is replayed twice.
	want = []string{"hold on", "replay a 0", "release", "replay a 0", "emit a 1", "emit a 30", "behind a", "caught up a"}
	if !slices.Equal(st.calls, want) {
		t.Errorf("second pass\n got %q\nwant %q", st.calls, want)
	}
}

// A conversation the user may not read has nothing to replay: its pushes
// are let through and the sync goes on with the others.
func TestSyncSkipsConversationsOfOthers(t *testing.T) {
	for _, refusal := range []error{domain.ErrForbidden, domain.ErrNotFound} {
		reads := &fakeReads{t: t, seqs: map[string][]int64{"b": {1}},
			errs: map[string]error{"a": fmt.Errorf("%w: not a member", refusal)}}
		st := newFakeSession()
		if _, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"a": 0, "b": 0}}); err != nil {
			t.Fatalf("%v: %v", refusal, err)
		}
		want := []string{"hold on", "replay a 0", "replay b 0", "release", "replay a 0", "refused a", "replay b 0", "emit b 1", "caught up b"}
		if !slices.Equal(st.calls, want) {
			t.Errorf("%v: calls\n got %q\nwant %q", refusal, st.calls, want)
		}
	}
}

// A failed catch-up fails the sync and leaves that conversation and every
// later one held (abandoned), so no live push moves the client's position
// past events it was not given; the ones caught up before stay released.
func TestSyncFailureKeepsTheRestHeld(t *testing.T) {
	outage := fmt.Errorf("%w: read model down", domain.ErrUnavailable)
	reads := &fakeReads{t: t, seqs: map[string][]int64{"a": {1}, "c": {1}}, errs: map[string]error{"b": outage}}
	st := newFakeSession()
	_, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"a": 0, "b": 0, "c": 0}})
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	want := []string{"hold on", "replay a 0", "replay b 0", "replay c 0", "release",
		"replay a 0", "emit a 1", "caught up a", "replay b 0", "abandon b", "abandon c"}
	if !slices.Equal(st.calls, want) {
		t.Errorf("calls\n got %q\nwant %q", st.calls, want)
	}
}

// A client that stops reading ends the replay as unavailable, with nothing
// emitted past the send queue's room.
func TestSyncStopsWhenTheConnectionHasNoRoom(t *testing.T) {
	reads := &fakeReads{t: t, seqs: map[string][]int64{"a": {1, 2}}}
	st := newFakeSession()
	st.roomErr = context.DeadlineExceeded
	_, err := syncOf(reads).Sync(context.Background(), "alice", st, SyncRequest{Positions: map[string]int64{"a": 0}})
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	for _, c := range st.calls {
		if strings.HasPrefix(c, "emit") {
			t.Errorf("emitted without room: %q", st.calls)
		}
	}
	if st.calls[len(st.calls)-1] != "abandon a" {
		t.Errorf("calls %q: want a abandoned", st.calls)
	}
}

// Bad requests are refused before anything is held.
func TestSyncRefusesBadRequests(t *testing.T) {
	many := map[string]int64{}
	for i := range MaxSyncPositions + 1 {
		many[fmt.Sprintf("c%d", i)] = 0
	}
	cases := map[string]SyncRequest{
		"too many":     {Positions: many},
		"bad id":       {Positions: map[string]int64{"a b": 0}},
		"negative seq": {Positions: map[string]int64{"a": -1}},
	}
	for name, req := range cases {
		st := newFakeSession()
		_, err := syncOf(&fakeReads{t: t}).Sync(context.Background(), "alice", st, req)
		if !errors.Is(err, domain.ErrBadRequest) || len(st.calls) != 0 {
			t.Errorf("%s: %v, calls %q; want bad_request and nothing held", name, err, st.calls)
		}
	}
	if _, err := syncOf(&fakeReads{t: t}).Sync(context.Background(), "alice", nil, SyncRequest{}); !errors.Is(err, domain.ErrBadRequest) {
		t.Errorf("no session: %v, want bad_request", err)
	}
}

func TestSyncCost(t *testing.T) {
	for n, want := range map[int]int{0: 1, 49: 1, 50: 2, 1000: 21} {
		if got := SyncCost(n); got != want {
			t.Errorf("SyncCost(%d) = %d, want %d", n, got, want)
		}
	}
}
