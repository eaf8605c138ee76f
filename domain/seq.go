package domain

// An event's seq is its offset in its partition plus one. Every consumer of
// the log (the producer's ack, the fan-out, the projector, a replay) derives
// the same number from the same offset, it grows in log order within a
// conversation (a conversation lives in one partition), and 0 is left free
// to mean "nothing seen yet" in sync positions and read cursors.

// SeqOf is the seq of the event at offset in its partition.
func SeqOf(offset int64) int64 { return offset + 1 }

// OffsetOf is the offset in its partition of the event with seq: the
// inverse of SeqOf.
func OffsetOf(seq int64) int64 { return seq - 1 }
