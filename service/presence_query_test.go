package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

func TestPresenceQueryValidate(t *testing.T) {
	ids, err := PresenceQuery{UserIDs: []string{"b", "a", "b"}}.Validate()
	if err != nil || !slices.Equal(ids, []string{"b", "a"}) {
		t.Errorf("repeats: %v %v, want [b a]", ids, err)
	}
	many := make([]string, MaxPresenceQuery+1)
	for i := range many {
		many[i] = "u"
	}
	for _, q := range []PresenceQuery{{}, {UserIDs: many}, {UserIDs: []string{"a", "bad id"}}, {UserIDs: []string{strings.Repeat("x", 500)}}} {
		if _, err := q.Validate(); !errors.Is(err, domain.ErrBadRequest) {
			t.Errorf("%d ids: %v, want bad_request", len(q.UserIDs), err)
		}
	}
}

// Only users who share a conversation with the caller show their presence;
// strangers read offline with no last_seen, and their presence is not even
// looked up.
func TestPresenceOfHidesStrangers(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &fakePresence{
		shared: map[string]bool{"bob": true, "carol": true},
		seen: map[string]domain.Seen{"bob": {Online: true}, "carol": {LastSeen: seen},
			"mallory": {Online: true, LastSeen: seen}},
	}
	s := &Service{Presence: p}
	before := time.Now().UTC()
	got, err := s.PresenceOf(context.Background(), "alice", PresenceQuery{UserIDs: []string{"mallory", "bob", "carol", "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].UserID != "mallory" || got[1].UserID != "bob" || got[2].UserID != "carol" {
		t.Fatalf("entries %+v, want mallory, bob, carol in the order asked", got)
	}
	if got[0].Status != domain.PresenceOffline || got[0].LastSeen != "" {
		t.Errorf("stranger %+v: want offline with no last_seen", got[0])
	}
	if at, err := time.Parse(time.RFC3339Nano, got[1].LastSeen); got[1].Status != domain.PresenceOnline || err != nil || at.Before(before.Truncate(time.Second)) {
		t.Errorf("online member %+v: want online, last seen now", got[1])
	}
	if got[2].Status != domain.PresenceOffline || got[2].LastSeen != seen.Format(time.RFC3339Nano) {
		t.Errorf("offline member %+v: want offline, last seen %s", got[2], seen)
	}
	if slices.Contains(p.asked, "mallory") {
		t.Errorf("looked up a stranger's presence: %v", p.asked)
	}
	if _, err := (&Service{}).PresenceOf(context.Background(), "alice", PresenceQuery{UserIDs: []string{"bob"}}); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("no presence source: %v, want unavailable", err)
	}
}
