package projections

import (
	"errors"
	"reflect"
	"testing"
)

func offsets(recs []Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Offset)
	}
	return out
}

func TestContinuingDropsAppliedAndRefusesGaps(t *testing.T) {
	r := func(p int32, off int64) Record { return Record{Partition: p, Offset: off} }
	cases := []struct {
		name  string
		next  map[int32]int64
		batch []Record
		want  []int64
		gap   bool
	}{
		{"continues", map[int32]int64{0: 3}, []Record{r(0, 3), r(0, 4)}, []int64{3, 4}, false},
		{"drops what was applied", map[int32]int64{0: 3}, []Record{r(0, 1), r(0, 2), r(0, 3)}, []int64{3}, false},
		// Two sessions' reads of one partition, overlapping: still one line.
		{"overlapping reads", map[int32]int64{0: 3}, []Record{r(0, 3), r(0, 4), r(0, 3), r(0, 4), r(0, 5)}, []int64{3, 4, 5}, false},
		{"a fresh partition starts at 0", map[int32]int64{}, []Record{r(1, 0)}, []int64{0}, false},
		{"gap at the start", map[int32]int64{0: 3}, []Record{r(0, 5)}, nil, true},
		{"gap inside", map[int32]int64{0: 3}, []Record{r(0, 3), r(0, 5)}, nil, true},
		{"gap in one partition of two", map[int32]int64{0: 0, 1: 7}, []Record{r(0, 0), r(1, 9)}, nil, true},
		{"a fresh partition read from a trimmed log", map[int32]int64{}, []Record{{Partition: 2, Offset: 40, Hole: 40}}, []int64{40}, false},
		{"a proven hole that covers the next offset", map[int32]int64{0: 3}, []Record{{Partition: 0, Offset: 9, Hole: 6}}, []int64{9}, false},
		{"a hole that does not reach back far enough", map[int32]int64{0: 3}, []Record{{Partition: 0, Offset: 9, Hole: 5}}, nil, true},
		{"an invalid record still advances", map[int32]int64{0: 3}, []Record{{Partition: 0, Offset: 3, Invalid: true}, r(0, 4)}, []int64{4}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := continuing(c.batch, c.next)
			if c.gap {
				if !errors.Is(err, ErrOffsetGap) {
					t.Fatalf("err = %v, want ErrOffsetGap", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(offsets(got), c.want) {
				t.Fatalf("kept %v, want %v", offsets(got), c.want)
			}
		})
	}
}
