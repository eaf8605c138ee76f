package kafkalog

import (
	"testing"

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
