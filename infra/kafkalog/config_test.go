package kafkalog

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Every CHAT_KAFKA_COMPRESSION value maps to its codec; others are refused.
func TestFranzCompression(t *testing.T) {
	for name, want := range map[string]kgo.CompressionCodec{"": kgo.NoCompression(), "none": kgo.NoCompression(),
		"gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()} {
		if got, err := franzCodec(name); err != nil || got != want {
			t.Errorf("%q: codec %v (err %v), want %v", name, got, err, want)
		}
	}
	if _, err := franzCodec("brotli"); err == nil {
		t.Error("an unknown codec is accepted")
	}
}

// Component configs refuse what the consumers and the producer cannot
// work with, naming the field.
func TestConfigsValidate(t *testing.T) {
	ok := Config{Brokers: []string{"localhost:9092"}, Topic: "t"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for name, err := range map[string]error{
		"no brokers":    Config{Topic: "t"}.Validate(),
		"no topic":      Config{Brokers: ok.Brokers}.Validate(),
		"linger":        Config{Brokers: ok.Brokers, Topic: "t", Linger: -time.Millisecond}.Validate(),
		"codec":         Config{Brokers: ok.Brokers, Topic: "t", Compression: "brotli"}.Validate(),
		"batch group":   BatchConfig{Kafka: ok, Size: 1}.Validate(),
		"batch size":    BatchConfig{Kafka: ok, Group: "g", Size: -1}.Validate(),
		"fetch wait":    BatchConfig{Kafka: ok, Group: "g", Size: 1, FetchWait: time.Hour}.Validate(),
		"fetch min":     BatchConfig{Kafka: ok, Group: "g", Size: 1, FetchMin: -1}.Validate(),
		"batch wait":    BatchConfig{Kafka: ok, Group: "g", Size: 1, Wait: time.Hour}.Validate(),
		"hurried wait":  BatchConfig{Kafka: ok, Group: "g", Size: 1, Wait: time.Millisecond, HurryWait: time.Second}.Validate(),
		"hurry window":  BatchConfig{Kafka: ok, Group: "g", Size: 1, HurryFor: -time.Second}.Validate(),
		"live group":    LiveConfig{Kafka: ok, MaxBatch: 1}.Validate(),
		"live batch":    LiveConfig{Kafka: ok, Group: "g"}.Validate(),
		"live gather":   LiveConfig{Kafka: ok, Group: "g", MaxBatch: 1, Gather: time.Minute}.Validate(),
		"live no topic": LiveConfig{Kafka: Config{Brokers: ok.Brokers}, Group: "g", MaxBatch: 1}.Validate(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b := BatchConfig{Kafka: ok, Group: "g"}
	b.setDefaults()
	if err := b.Validate(); err != nil || b.Size != 1000 || b.HurryWait <= 0 || b.HurryWait > b.Wait || b.HurryFor <= 0 {
		t.Errorf("batch defaults: size %d, hurried wait %s for %s, %v", b.Size, b.HurryWait, b.HurryFor, err)
	}
}
