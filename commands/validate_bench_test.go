package commands

import (
	"strconv"
	"strings"
	"testing"
)

// Command validation runs on every command before any I/O.
//
//	go test -run '^$' -bench . -benchmem ./commands/

func BenchmarkValidateSendMessage(b *testing.B) {
	c := SendMessage{ConversationID: "c_5f2a9d0e7b3c4a1f8e6d2c0b9a8f7e6d", ClientMsgID: "3f2a-11ee-9c1d-0242ac120002",
		Body: strings.Repeat("héllo ", 16)}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateCreateConversation(b *testing.B) {
	for _, n := range []int{9, 999} {
		c := CreateConversation{Kind: "group", Title: "bench"}
		for i := range n {
			c.Members = append(c.Members, "user_"+strconv.Itoa(i))
		}
		b.Run(strconv.Itoa(n+1)+"-members", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Validate("alice"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
