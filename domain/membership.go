package domain

// Membership is a user's latest membership change in a conversation, as the
// log ordered it: the seq of the join or leave, and whether it was a join.
// Applying changes by seq makes them idempotent and order-independent.
type Membership struct {
	Seq    int64
	Member bool
}
