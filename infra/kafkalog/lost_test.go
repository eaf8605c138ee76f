package kafkalog

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A partition lost without a revoke (this member's session expired) is
// neither settled nor committed: another member may own it already, and
// what Settle saves with a commit (the fan-out's Prev chains) would
// overwrite the new owner's. Its handled offset is dropped; the others'
// stay for the next commit.
func TestLostPartitionsAreNotSettled(t *testing.T) {
	settled := 0
	var forgot []int32
	m := &merged{
		cfg: LiveConfig{
			Settle: func(context.Context) error { settled++; return errors.New("not now") },
			Forget: func(ps []int32) { forgot = append(forgot, ps...) },
		},
		log: slog.New(slog.DiscardHandler), seq: newSequencer(10), owns: make(chan struct{}, 1),
		handled: map[int32]kgo.EpochOffset{0: {Offset: 5}, 1: {Offset: 7}},
	}
	m.seq.assign([]int32{0, 1})
	m.applyChange(nil, groupChange{lost: true, partitions: []int32{0}, applied: make(chan struct{})})
	if settled != 0 {
		t.Fatalf("Settle called %d times for a lost partition", settled)
	}
	if _, kept := m.handled[0]; kept {
		t.Fatal("the lost partition's offset is kept for a later commit")
	}
	if _, kept := m.handled[1]; !kept {
		t.Fatal("another partition's handled offset was dropped")
	}
	if !slices.Equal(forgot, []int32{0}) || !slices.Equal(*m.owned.Load(), []int32{1}) {
		t.Fatalf("forgot %v, owns %v: want 0 forgotten and 1 owned", forgot, *m.owned.Load())
	}
}
