package projections

import "context"

// Contacts lists up to limit users who share a conversation with user
// (presence announcements reach them).
func (s *Store) Contacts(ctx context.Context, user string, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT DISTINCT o.user_id
		FROM {s}.members me JOIN {s}.members o ON o.conversation_id = me.conversation_id AND o.is_member
		WHERE me.user_id = $1 AND me.is_member AND o.user_id <> $1
		LIMIT $2`), user, limit)
	if err != nil {
		return nil, unavailable("contacts", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, unavailable("contacts", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("contacts", err)
	}
	return out, nil
}

// SharedWith returns which of others share a conversation with user (user
// itself counts as shared).
func (s *Store) SharedWith(ctx context.Context, user string, others []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT DISTINCT o.user_id
		FROM {s}.members me JOIN {s}.members o ON o.conversation_id = me.conversation_id AND o.is_member
		WHERE me.user_id = $1 AND me.is_member AND o.user_id = ANY($2)`), user, others)
	if err != nil {
		return nil, unavailable("shared conversations", err)
	}
	defer rows.Close()
	out := map[string]bool{user: true}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, unavailable("shared conversations", err)
		}
		out[u] = true
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("shared conversations", err)
	}
	return out, nil
}
