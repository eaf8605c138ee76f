package kafkalog

import (
	"testing"

	"github.com/IBM/sarama"
)

func TestProducerCompression(t *testing.T) {
	for name, want := range map[string]sarama.CompressionCodec{"": sarama.CompressionNone, "none": sarama.CompressionNone,
		"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD} {
		sc, err := ProducerConfig(Config{Compression: name})
		if err != nil || sc.Producer.Compression != want {
			t.Errorf("%q: codec %v (err %v), want %v", name, sc.Producer.Compression, err, want)
		}
	}
	if _, err := ProducerConfig(Config{Compression: "brotli"}); err == nil {
		t.Error("an unknown codec is accepted")
	}
}

func TestFranzCompression(t *testing.T) {
	for _, name := range []string{"", "none", "gzip", "snappy", "lz4", "zstd"} {
		if _, err := franzCodec(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := franzCodec("brotli"); err == nil {
		t.Error("an unknown codec is accepted")
	}
}
