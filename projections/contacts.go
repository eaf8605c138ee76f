package projections

import (
	"context"
	"time"
)

// ContactsOf lists, for each of users, up to limit users who share a
// conversation with it, in one query.
func (s *Store) ContactsOf(ctx context.Context, users []string, limit int) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, s.q(`SELECT u, c FROM unnest($1::text[]) AS u,
		LATERAL (SELECT array_agg(x.user_id) AS c FROM (SELECT DISTINCT o.user_id
			FROM {s}.members me JOIN {s}.members o ON o.conversation_id = me.conversation_id AND o.is_member
			WHERE me.user_id = u AND me.is_member AND o.user_id <> u LIMIT $2) x) l`), users, limit)
	if err != nil {
		return nil, unavailable("contacts", err)
	}
	defer rows.Close()
	out := make(map[string][]string, len(users))
	for rows.Next() {
		var u string
		var c []string
		if err := rows.Scan(&u, &c); err != nil {
			return nil, unavailable("contacts", err)
		}
		out[u] = c
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

// RecordOnline notes that users were online on at's UTC day, for the
// analytics view online_users_per_day (control migration 0004). Not a read
// model: the log has no presence, so a replay neither rebuilds nor drops it.
func (s *Store) RecordOnline(ctx context.Context, users []string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO parley.presence_days (name, day, user_id, first_online_at)
		SELECT $1, ($2::timestamptz AT TIME ZONE 'UTC')::date, u, $2 FROM unnest($3::text[]) u
		ON CONFLICT DO NOTHING`, s.name, at, users)
	if err != nil {
		return unavailable("presence days", err)
	}
	return nil
}
