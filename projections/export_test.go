package projections

// Exported for the external tests of this package.

// MessageByClientIDSQL is the query of Store.MessageByClientID, for a plan check.
func (s *Store) MessageByClientIDSQL() string { return s.q(messageByClientIDSQL) }
