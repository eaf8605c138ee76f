package fanoutbus

import (
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if _, err := New(nil, Config{Prefix: "p"}, nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []Config{{}, {Prefix: "p", MaxLen: 3}, {Prefix: "p", MaxLen: -1}} {
		if _, err := New(nil, c, nil); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
}
