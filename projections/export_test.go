package projections

// Exported for the external tests of this package.

// SentMessageSQL is the query of Store.SentMessage, for a plan check.
func (s *Store) SentMessageSQL() string { return s.q(sentMessageSQL) }

// EventsAfterSQL is the query of Store.EventsAfter (sync), for a plan check.
func (s *Store) EventsAfterSQL() string { return s.q(eventsAfterSQL) }

// WithoutSentIDs makes s insert messages with ON CONFLICT, as it did before
// it remembered the ids it wrote (sent_ids.go).
func (s *Store) WithoutSentIDs() *Store { s.ids = nil; return s }

// SetRebuildBounds lowers what a replay's applier keeps in memory
// (sent_ids.go, replay_applier.go) until the test ends.
func SetRebuildBounds(t interface{ Cleanup(func()) }, seen, last int) {
	oldSeen, oldLast := maxSeen, maxDeferredLast
	maxSeen, maxDeferredLast = seen, last
	t.Cleanup(func() { maxSeen, maxDeferredLast = oldSeen, oldLast })
}

// MessageWriteSQL are the batch statements that find message rows, by the
// index each must use, and the settings a batch plans them under, for a
// plan check.
func (s *Store) MessageWriteSQL() (settings string, stmts map[string][2]string) {
	return `SELECT ` + planSettings, map[string][2]string{
		"edits":          {s.q(editsSQL), "_conversation_id_message_id_key"},
		"deletes":        {s.q(deletesSQL), "_conversation_id_message_id_key"},
		"missing folded": {s.q(missingFoldedSQL), "_key"}, // either unique key
	}
}

// HoldSearchSlot takes a slot of l as another user's running search would.
func HoldSearchSlot(l *SearchLimit) (release func()) {
	l.slots <- struct{}{}
	return func() { <-l.slots }
}

// SearchBusy reports whether user has a search waiting or running in l.
func SearchBusy(l *SearchLimit, user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.users[user]
	return ok
}

// ReplayLockClass is the first key of a replay's advisory lock.
const ReplayLockClass = replayLockClass
