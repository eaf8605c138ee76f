package config

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// strong32 and strong33 are secrets of acceptable length.
const (
	strong32 = "0123456789abcdef0123456789abcdef"
	strong33 = strong32 + "x"
)

func TestJWTPreviousSecrets(t *testing.T) {
	t.Setenv("CHAT_JWT_SECRET", strong32)
	for _, c := range []struct {
		value string
		want  []string // nil: refused
	}{
		{"", []string{}}, {strong33, []string{strong33}}, {strong33 + "," + strong32, []string{strong33, strong32}},
		{strong33 + ",", nil}, {"," + strong33, nil}, {strong33 + ", ," + strong32, nil},
		{"old", nil}, {strong33 + "," + DevSecret, nil},
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

// Outside development, chatd refuses to start with a secret anyone could
// know or guess: short, the public development secret, or a template's
// placeholder; the error says why without printing the secret.
func TestWeakJWTSecretRefused(t *testing.T) {
	t.Setenv("CHAT_DEV_AUTH", "false")
	t.Setenv("CHAT_JWT_PREVIOUS_SECRETS", "")
	for secret, why := range map[string]string{
		"short":                                 "at least 32",
		DevSecret:                               "development secret",
		"REPLACE-with-at-least-32-random-bytes": "placeholder",
		strings.Repeat("x", 31):                 "at least 32",
		"":                                      "required",
	} {
		t.Setenv("CHAT_JWT_SECRET", secret)
		_, err := Load()
		if err == nil || !strings.Contains(err.Error(), why) || secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("secret %q: error %v, want one saying %q without the secret", secret, err, why)
		}
	}
	t.Setenv("CHAT_JWT_SECRET", strong32)
	if _, err := Load(); err != nil {
		t.Errorf("a 32-byte secret: %v", err)
	}
	// Development accepts the development secret (and mints with it).
	t.Setenv("CHAT_DEV_AUTH", "true")
	t.Setenv("CHAT_JWT_SECRET", "")
	if cfg, err := Load(); err != nil || cfg.JWTSecret != DevSecret {
		t.Errorf("dev auth: %v (secret set: %v)", err, cfg.JWTSecret == DevSecret)
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

func TestProjectorWaits(t *testing.T) {
	t.Setenv("CHAT_DEV_AUTH", "true")
	cfg, err := Load()
	if err != nil || cfg.ProjectorFetchWait != 100*time.Millisecond || cfg.SearchConcurrency != 4 || cfg.SearchTimeout != 5*time.Second {
		t.Fatalf("default fetch wait %v, search concurrency %d, search timeout %s (err %v), want 100ms, 4 and 5s",
			cfg.ProjectorFetchWait, cfg.SearchConcurrency, cfg.SearchTimeout, err)
	}
	for _, bad := range [][2]string{{"CHAT_PROJECTOR_FETCH_WAIT", "5ms"}, {"CHAT_PROJECTOR_FETCH_WAIT", "1m"}, {"CHAT_PROJECTOR_WAIT", "0s"}, {"CHAT_PROJECTOR_WAIT", "11s"}, {"CHAT_HOP_GATHER", "-1ms"}, {"CHAT_HOP_GATHER", "1s"},
		{"CHAT_IDEM_PENDING_STALE", "0s"}, {"CHAT_IDEM_PENDING_STALE", "24h"},
		{"CHAT_SEARCH_CONCURRENCY", "0"}, {"CHAT_SEARCH_CONCURRENCY", "11"}, {"CHAT_SEARCH_TIMEOUT", "10ms"}, {"CHAT_SEARCH_TIMEOUT", "16s"}} {
		t.Run(bad[0]+"="+bad[1], func(t *testing.T) {
			t.Setenv(bad[0], bad[1])
			if _, err := Load(); err == nil || !strings.Contains(err.Error(), bad[0]) {
				t.Errorf("error %v, want one naming %s", err, bad[0])
			}
		})
	}
}
