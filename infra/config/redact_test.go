package config

import (
	"strings"
	"testing"
)

// A malformed URL is reported without the URL: it may hold a password.
func TestURLErrorsDoNotLeakPasswords(t *testing.T) {
	c := Config{DevAuth: true, Roles: []string{RoleGateway}, KafkaBrokers: []string{"k:9092"}, Partitions: 1,
		ReplicationFactor: 1, BatchSize: 1, RateLimit: 1, RateBurst: 1, SendQueue: 1, DBSchema: "chat",
		DatabaseURL: "postgres://u:s3cretpw@h:54x32/chat", RedisURL: "redis://:s3cretpw@h:6379/0\x7f"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "CHAT_DATABASE_URL") || !strings.Contains(err.Error(), "CHAT_REDIS_URL") {
		t.Fatalf("want both URLs refused, got %v", err)
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("the error leaks the password: %v", err)
	}
}
