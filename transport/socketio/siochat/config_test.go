package siochat

import "testing"

// The defaults are valid; negative queues and bursts are refused by New.
func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}, nil, nil, nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []Config{{SendQueue: -1}, {CommandQueue: -2}, {RateLimit: -1}, {RateLimit: 5, RateBurst: -1}, {CommandTimeout: -1}} {
		if _, err := New(c, nil, nil, nil); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
}
