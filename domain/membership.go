package domain

// Membership is a user's latest membership change in a conversation, as the
// log ordered it: the seq of the join or leave, and whether it was a join.
// Applying changes by seq makes them idempotent and order-independent.
type Membership struct {
	Seq    int64
	Member bool
	// Joined is, for a leave, the seq of the join it ended (0: unknown):
	// the user was a member over [Joined, Seq). A fan-out that loaded the
	// membership after applying the leave still reaches the user with the
	// events before it.
	Joined int64
}

// MemberAt reports whether m makes its user a member at seq, as far as
// it tells: a join at or before seq, or a leave after seq of a membership
// that began at or before seq.
func (m Membership) MemberAt(seq int64) bool {
	if m.Member {
		return m.Seq <= seq
	}
	return m.Joined > 0 && m.Joined <= seq && seq < m.Seq
}
