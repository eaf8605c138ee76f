package config

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestJWTPreviousSecrets(t *testing.T) {
	t.Setenv("CHAT_JWT_SECRET", "new")
	for _, c := range []struct {
		value string
		want  []string // nil: refused
	}{
		{"", []string{}}, {"old", []string{"old"}}, {"old,older", []string{"old", "older"}},
		{"old,", nil}, {",old", nil}, {"old, ,older", nil},
	} {
		t.Setenv("CHAT_JWT_PREVIOUS_SECRETS", c.value)
		cfg, err := Load()
		if c.want == nil {
			if err == nil || !strings.Contains(err.Error(), "CHAT_JWT_PREVIOUS_SECRETS") {
				t.Errorf("%q: error %v, want one naming CHAT_JWT_PREVIOUS_SECRETS", c.value, err)
			}
			continue
		}
		if err != nil || !slices.Equal(cfg.JWTPrevious, c.want) { // nil equals empty
			t.Errorf("%q: read as %q (err %v), want %q", c.value, cfg.JWTPrevious, err, c.want)
		}
	}
}

func TestKafkaCompression(t *testing.T) {
	t.Setenv("CHAT_DEV_AUTH", "true")
	t.Setenv("CHAT_KAFKA_COMPRESSION", "") // restored after the test, whatever the loop does
	for value, ok := range map[string]bool{"": true, "none": true, "zstd": true, "lz4": true, "brotli": false, "ZSTD": false} {
		if value == "" {
			os.Unsetenv("CHAT_KAFKA_COMPRESSION")
		} else {
			t.Setenv("CHAT_KAFKA_COMPRESSION", value)
		}
		cfg, err := Load()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "CHAT_KAFKA_COMPRESSION") {
			t.Errorf("%q: error %v", value, err)
		}
		if value == "" && cfg.Compression != "none" {
			t.Errorf("default codec %q, want none", cfg.Compression)
		}
	}
}
