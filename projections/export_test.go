package projections

// Exported for the external tests of this package.

// MessageByClientIDSQL is the query of Store.MessageByClientID, for a plan check.
func (s *Store) MessageByClientIDSQL() string { return s.q(messageByClientIDSQL) }

// EventsAfterSQL is the query of Store.EventsAfter (sync), for a plan check.
func (s *Store) EventsAfterSQL() string { return s.q(eventsAfterSQL) }
