package redisstore

// MembersKey exposes the members hash key to the tests.
func (s *Store) MembersKey(conv string) string { return s.membersKey(conv) }
