package kafkalog

import (
	"fmt"
	"sync"
	"testing"

	"github.com/IBM/sarama"
)

// TestPartitionOfMatchesSarama: the key hash is the one every earlier
// record was written with.
func TestPartitionOfMatchesSarama(t *testing.T) {
	sp := sarama.NewHashPartitioner("t")
	for _, n := range []int32{1, 8, 12, 32, 100} {
		for i := range 5000 {
			key := fmt.Sprintf("c_%032x", i*7919)
			want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got := PartitionOf(key, n); got != want {
				t.Fatalf("%s of %d: %d, Sarama %d", key, n, got, want)
			}
		}
	}
}

// TestPartitionOfConcurrent: concurrent callers agree (Sarama's shared
// hasher did not, which split a conversation over two partitions).
func TestPartitionOfConcurrent(t *testing.T) {
	keys := make([]string, 200)
	want := make([]int32, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("c_%d", i)
		want[i] = PartitionOf(keys[i], 8)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 2000 {
				i := (g*31 + r) % len(keys)
				if got := PartitionOf(keys[i], 8); got != want[i] {
					errs <- fmt.Sprintf("%s: %d, want %d", keys[i], got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
