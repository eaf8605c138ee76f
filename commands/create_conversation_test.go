package commands

import (
	"errors"
	"slices"
	"strings"
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

func TestCreateConversationRefusesNULInTitle(t *testing.T) {
	c := CreateConversation{Kind: "group", Title: "a\u0000b", Members: []string{"u2"}}
	if _, err := c.Validate("u1"); !errors.Is(err, domain.ErrBadRequest) || !strings.Contains(err.Error(), "title") {
		t.Fatalf("title with U+0000: %v", err)
	}
}
