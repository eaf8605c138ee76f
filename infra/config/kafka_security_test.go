package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clearKafkaSecurity unsets every Kafka security variable for the test.
func clearKafkaSecurity(t *testing.T) {
	t.Helper()
	t.Setenv("CHAT_JWT_SECRET", strong32)
	for _, v := range []string{"CHAT_KAFKA_SASL_MECHANISM", "CHAT_KAFKA_SASL_USER", "CHAT_KAFKA_SASL_PASSWORD",
		"CHAT_KAFKA_SASL_PASSWORD_FILE", "CHAT_KAFKA_TLS", "CHAT_KAFKA_TLS_CA"} {
		t.Setenv(v, "")
	}
}

// The SASL password may come from a file (a mounted Secret); one trailing
// newline is not part of it.
func TestKafkaPasswordFile(t *testing.T) {
	clearKafkaSecurity(t)
	f := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(f, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHAT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("CHAT_KAFKA_SASL_USER", "parley")
	t.Setenv("CHAT_KAFKA_SASL_PASSWORD_FILE", f)
	cfg, err := Load()
	if err != nil || cfg.KafkaSASLPassword != "s3cret pass" {
		t.Fatalf("password %q (err %v), want the file's content without its newline", cfg.KafkaSASLPassword, err)
	}
	t.Setenv("CHAT_KAFKA_SASL_PASSWORD", "inline")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a password and a password file: error %v", err)
	}
	t.Setenv("CHAT_KAFKA_SASL_PASSWORD", "")
	t.Setenv("CHAT_KAFKA_SASL_PASSWORD_FILE", filepath.Join(t.TempDir(), "missing"))
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "CHAT_KAFKA_SASL_PASSWORD_FILE") {
		t.Errorf("a missing password file: error %v", err)
	}
}

func TestKafkaSecurityValidated(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string // "" accepted, else a part of the error
	}{
		{map[string]string{}, ""},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "CHAT_KAFKA_SASL_USER": "u", "CHAT_KAFKA_SASL_PASSWORD": "p"}, ""},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "PLAIN", "CHAT_KAFKA_SASL_USER": "u", "CHAT_KAFKA_SASL_PASSWORD": "p", "CHAT_KAFKA_TLS": "true"}, ""},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "CHAT_KAFKA_SASL_USER": "u"}, "needs CHAT_KAFKA_SASL_USER and CHAT_KAFKA_SASL_PASSWORD"},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "CHAT_KAFKA_SASL_PASSWORD": "p"}, "needs CHAT_KAFKA_SASL_USER"},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "PLAIN", "CHAT_KAFKA_SASL_USER": "u", "CHAT_KAFKA_SASL_PASSWORD": "p"}, "in the clear"},
		{map[string]string{"CHAT_KAFKA_SASL_MECHANISM": "scram", "CHAT_KAFKA_SASL_USER": "u", "CHAT_KAFKA_SASL_PASSWORD": "p"}, "is not one of"},
		{map[string]string{"CHAT_KAFKA_SASL_USER": "u", "CHAT_KAFKA_SASL_PASSWORD": "p"}, "need CHAT_KAFKA_SASL_MECHANISM"},
		{map[string]string{"CHAT_KAFKA_TLS_CA": notPEM}, "needs CHAT_KAFKA_TLS=true"},
		{map[string]string{"CHAT_KAFKA_TLS": "true", "CHAT_KAFKA_TLS_CA": notPEM}, "no PEM certificate"},
		{map[string]string{"CHAT_KAFKA_TLS": "true", "CHAT_KAFKA_TLS_CA": notPEM + ".missing"}, "CHAT_KAFKA_TLS_CA"},
	} {
		clearKafkaSecurity(t)
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		_, err := Load()
		if c.want == "" && err != nil {
			t.Errorf("%v: %v", c.env, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: error %v, want one saying %q", c.env, err, c.want)
		}
		if err != nil && c.env["CHAT_KAFKA_SASL_PASSWORD"] != "" && strings.Contains(err.Error(), "="+c.env["CHAT_KAFKA_SASL_PASSWORD"]) {
			t.Errorf("%v: the error shows the password: %v", c.env, err)
		}
	}
}
