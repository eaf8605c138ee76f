package config

import (
	"strings"
	"testing"
)

func TestAdvertiseAddr(t *testing.T) {
	t.Setenv("CHAT_DEV_AUTH", "true")
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"", true}, {"10.0.3.7:8080", true}, {"parley-0.parley:8080", true}, {"[fd00::7]:8080", true},
		{"10.0.3.7", false}, {":8080", false}, {"10.0.3.7:", false}, {"http://10.0.3.7:8080", false},
	} {
		t.Setenv("CHAT_ADVERTISE_ADDR", c.addr)
		cfg, err := Load()
		if c.ok != (err == nil) {
			t.Errorf("%q: error %v", c.addr, err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "CHAT_ADVERTISE_ADDR") {
			t.Errorf("%q: error does not name the variable: %v", c.addr, err)
		}
		if c.ok && cfg.AdvertiseAddr != c.addr {
			t.Errorf("%q: read as %q", c.addr, cfg.AdvertiseAddr)
		}
	}
}
