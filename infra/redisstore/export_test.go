package redisstore

// MembersKey exposes the members hash key to the tests.
func (s *Store) MembersKey(conv string) string { return s.membersKey(conv) }

// ReplyLen exposes the RESP reply scanner to the fuzz test.
func ReplyLen(b []byte) (int, string, error) { return replyLen(b) }
