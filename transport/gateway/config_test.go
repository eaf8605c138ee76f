package gateway

import (
	"testing"
	"time"
)

// WSConfig's defaults are valid; values the endpoint cannot work with are
// refused by NewWSServer.
func TestWSConfigValidate(t *testing.T) {
	var c WSConfig
	c.defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mut := range map[string]func(*WSConfig){
		"send queue": func(c *WSConfig) { c.SendQueue = -1 },
		"max frame":  func(c *WSConfig) { c.MaxFrame = 10 },
		"rate":       func(c *WSConfig) { c.RateLimit = -1 },
		"burst":      func(c *WSConfig) { c.RateLimit, c.RateBurst = 5, -1 },
		"pong wait":  func(c *WSConfig) { c.PingInterval, c.PongWait = time.Second, time.Second },
		"ping":       func(c *WSConfig) { c.PingInterval = time.Millisecond },
		"write wait": func(c *WSConfig) { c.WriteWait = -time.Second },
	} {
		c := WSConfig{}
		mut(&c)
		if _, err := NewWSServer(c, nil, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
