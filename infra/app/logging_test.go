package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// JSON unless told otherwise (a buffer is no terminal), node_id on every
// line, and the level honoured.
func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log := NewLogger(&b, "", "info", "node-7")
	log.Debug("hidden")
	log.Info("shown", "conversation_id", "c1")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", b.String())
	}
	if rec["node_id"] != "node-7" || rec["msg"] != "shown" || rec["conversation_id"] != "c1" {
		t.Fatalf("line %v", rec)
	}

	b.Reset()
	NewLogger(&b, "text", "debug", "node-7").Debug("plain")
	if s := b.String(); !strings.Contains(s, "msg=plain") || !strings.Contains(s, "node_id=node-7") {
		t.Fatalf("text line %q", s)
	}
}
