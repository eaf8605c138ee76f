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
	// PriorJoined and PriorLeft are the membership that ended before the
	// latest join, [PriorJoined, PriorLeft) (zero: none known): a user who
	// left and was added back, both applied before the fan-out reached the
	// events of its first membership, still gets them.
	PriorJoined, PriorLeft int64
}

// MemberAt reports whether m makes its user a member at seq, as far as
// it tells: a join at or before seq, a leave after seq of a membership
// that began at or before seq, or seq within the prior membership.
func (m Membership) MemberAt(seq int64) bool {
	if m.PriorLeft > 0 && m.PriorJoined <= seq && seq < m.PriorLeft {
		return true
	}
	if m.Member {
		return m.Seq <= seq
	}
	return m.Joined > 0 && m.Joined <= seq && seq < m.Seq
}
