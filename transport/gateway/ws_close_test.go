package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A close reason fits a control frame: past 123 bytes gorilla sends no
// close frame at all, and the client sees 1006 instead of the code.
func TestCloseReasonFitsAControlFrame(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, two per character
	got := closeReason(long)
	if len(got) > 123 || !utf8.ValidString(got) || !strings.HasPrefix(long, got) || len(got) < 122 {
		t.Fatalf("closeReason of 200 bytes: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := closeReason("try another node"); got != "try another node" {
		t.Fatalf("a short reason changed: %q", got)
	}
}
