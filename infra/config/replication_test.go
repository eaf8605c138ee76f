package config

import (
	"strings"
	"testing"
)

func TestReplicationSettings(t *testing.T) {
	t.Setenv("CHAT_DEV_AUTH", "true")
	for _, c := range []struct {
		rf, isr string
		ok      bool
	}{
		{"1", "1", true}, {"3", "2", true}, {"3", "3", true},
		{"3", "4", false}, {"1", "2", false}, {"3", "0", false},
	} {
		t.Setenv("CHAT_KAFKA_REPLICATION_FACTOR", c.rf)
		t.Setenv("CHAT_KAFKA_MIN_INSYNC_REPLICAS", c.isr)
		cfg, err := Load()
		if c.ok != (err == nil) {
			t.Errorf("RF %s, min ISR %s: error %v", c.rf, c.isr, err)
		}
		if err != nil && !strings.Contains(err.Error(), "CHAT_KAFKA_MIN_INSYNC_REPLICAS") {
			t.Errorf("RF %s, min ISR %s: error does not name the variable: %v", c.rf, c.isr, err)
		}
		if c.ok && (cfg.MinInsyncReplicas == 0 || cfg.ReplicationFactor == 0) {
			t.Errorf("RF %s, min ISR %s: not read", c.rf, c.isr)
		}
	}
}
