package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/projections"
)

// A failed replay says the active read models are unchanged and names the
// incomplete schema it left; it no longer reports a rebuild, nor, with
// --drop-old, a drop that did not happen.
func TestPrintReplaySaysWhatAFailureLeft(t *testing.T) {
	var b strings.Builder
	printReplay(&b, projections.ReplayResult{Schema: "chat_r1", Previous: "chat"}, replayFlags{DropOld: true}, errors.New("kafka: broker down"))
	out := b.String()
	if !strings.Contains(out, "replay failed") || !strings.Contains(out, "chatctl drop-schema chat_r1") || strings.Contains(out, "rebuilt") {
		t.Fatalf("after a failed rebuild: %q", out)
	}
	b.Reset()
	printReplay(&b, projections.ReplayResult{Schema: "chat_r1", Previous: "chat", Switched: true}, replayFlags{DropOld: true}, errors.New("drop old schema: refused"))
	if out := b.String(); strings.Contains(out, "dropped chat") || !strings.Contains(out, "chatctl drop-schema chat") {
		t.Fatalf("after a switch whose drop failed: %q", out)
	}
}
