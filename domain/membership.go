package domain

// Membership is a user's latest membership change in a conversation, as the
// log ordered it: the seq of the join or leave, and whether it was a join.
// Applying changes by seq makes them idempotent and order-independent.
type Membership struct {
	Seq    int64
	Member bool
}

// Newer reports whether m supersedes old.
func (m Membership) Newer(old Membership) bool { return m.Seq > old.Seq }

// Recipients of an event: the members after the event, plus, for a leave,
// the user who left (so they learn they are out). Events are applied to the
// membership before recipients are computed, which is what makes a joiner
// receive its own member.joined and nothing before it.
func Recipients(members []string, e Event, leftUser string) []string {
	if e.Type == EvMemberLeft && leftUser != "" {
		return append(members, leftUser)
	}
	return members
}
