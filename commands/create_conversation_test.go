package commands

import (
	"errors"
	"slices"
	"strconv"
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

// A group holds at most MaxGroupMembers, its creator included: as many
// others as that less one, or the creator among them, pass; one more is
// refused (it made a group add_member then called over-full).
func TestCreateConversationGroupBound(t *testing.T) {
	others := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "u" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + strconv.Itoa(i)
		}
		return out
	}
	if got, err := (CreateConversation{Kind: domain.KindGroup, Members: others(domain.MaxGroupMembers - 1)}).Validate("alice"); err != nil || len(got) != domain.MaxGroupMembers {
		t.Fatalf("creator and %d others: %d members (err %v), want %d", domain.MaxGroupMembers-1, len(got), err, domain.MaxGroupMembers)
	}
	if got, err := (CreateConversation{Kind: domain.KindGroup, Members: append(others(domain.MaxGroupMembers-1), "alice")}).Validate("alice"); err != nil || len(got) != domain.MaxGroupMembers {
		t.Fatalf("the creator listed among the members: %d members (err %v)", len(got), err)
	}
	if _, err := (CreateConversation{Kind: domain.KindGroup, Members: others(domain.MaxGroupMembers)}).Validate("alice"); !errors.Is(err, domain.ErrBadRequest) || !strings.Contains(err.Error(), "creator included") {
		t.Fatalf("creator and %d others: err %v, want bad_request", domain.MaxGroupMembers, err)
	}
}
