package kafkalog

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No code outside this package builds a Kafka client itself, or through the
// deprecated helpers without security: every client of chatd, chatctl and
// chatbench comes from a Config (NewClient, NewAdmin, OpenPartitionReader,
// NewBatchConsumer, RunLive, Open, EnsureTopic), which carries the SASL and
// TLS settings. Tests may reach the local PLAINTEXT broker directly.
func TestClientsCarrySecurity(t *testing.T) {
	forbidden := regexp.MustCompile(`\b(sarama\.New(Config|Client|ClusterAdmin|ConsumerGroup|Consumer|AsyncProducer|SyncProducer)\b|kgo\.NewClient\b|kafkalog\.(SaramaConfig|NewPartitionReader)\b)`)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	here, _ := filepath.Abs(".")
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); strings.HasPrefix(n, ".") || n == "node_modules" || n == "vendor" || p == here {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			if m := forbidden.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s:%d builds a Kafka client with %s: build it from a kafkalog.Config (app.KafkaConfig), which carries the security", rel, i+1, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d Go files: the walk is broken", checked)
	}
}
