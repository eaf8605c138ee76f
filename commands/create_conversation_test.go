package commands

import (
	"errors"
	"slices"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestCreateConversationMembers(t *testing.T) {
	cases := []struct {
		kind    string
		members []string
		want    []string // nil: refused
	}{
		{domain.KindGroup, []string{"carol", "bob", "carol", "alice"}, []string{"alice", "bob", "carol"}},
		{domain.KindGroup, nil, []string{"alice"}},
		{domain.KindDirect, []string{"bob", "bob"}, []string{"alice", "bob"}},
		{domain.KindDirect, []string{"alice"}, nil},
		{domain.KindDirect, []string{"bob", "carol"}, nil},
		{domain.KindGroup, []string{"bob", ""}, nil},
	}
	for _, c := range cases {
		got, err := CreateConversation{Kind: c.kind, Members: c.members}.Validate("alice")
		if c.want == nil {
			if !errors.Is(err, domain.ErrBadRequest) {
				t.Errorf("%s %v: err %v, want a bad request", c.kind, c.members, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s %v: %v (err %v), want %v", c.kind, c.members, got, err, c.want)
		}
	}
}
