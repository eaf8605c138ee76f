package gateway

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/service"
)

// FuzzPresenceQuery: whatever a client sends as presence.query data is
// decoded and validated into a bad_request or into 1-200 distinct, valid
// user ids.
func FuzzPresenceQuery(f *testing.F) {
	f.Add([]byte(`{"user_ids":["alice","bob"]}`))
	f.Add([]byte(`{"user_ids":[]}`))
	f.Add([]byte(`{"user_ids":"alice"}`))
	f.Add([]byte(`{"user_ids":["a","a",null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := decode[service.PresenceQuery](json.RawMessage(data))
		if err != nil {
			if !errors.Is(err, domain.ErrBadRequest) {
				t.Fatalf("decode %q: %v, want bad_request", data, err)
			}
			return
		}
		ids, err := q.Validate()
		if err != nil {
			if !errors.Is(err, domain.ErrBadRequest) {
				t.Fatalf("validate %q: %v, want bad_request", data, err)
			}
			return
		}
		if len(ids) < 1 || len(ids) > service.MaxPresenceQuery {
			t.Fatalf("%q: %d ids", data, len(ids))
		}
		seen := map[string]bool{}
		for _, u := range ids {
			if seen[u] || domain.ValidateUserID("user_ids", u) != nil {
				t.Fatalf("%q: id %q repeated or invalid", data, u)
			}
			seen[u] = true
		}
	})
}
