package kafkalog

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
)

// EnsureTopic creates the events topic if it does not exist. The partition
// count is fixed at creation: more partitions would move conversations.
func EnsureTopic(cfg Config) (created bool, err error) {
	admin, err := NewAdmin(cfg)
	if err != nil {
		return false, err
	}
	defer admin.Close()
	minISR := strconv.Itoa(max(cfg.MinInsyncReplicas, 1))
	detail := &sarama.TopicDetail{
		NumPartitions:     cfg.Partitions,
		ReplicationFactor: cfg.ReplicationFactor,
		ConfigEntries: map[string]*string{
			"min.insync.replicas": &minISR,
			"retention.ms":        ptr("-1"), // the log is the source of truth
		},
	}
	err = admin.CreateTopic(cfg.Topic, detail, false)
	var te *sarama.TopicError
	if errors.As(err, &te) && te.Err == sarama.ErrTopicAlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create topic %s: %w", cfg.Topic, err)
	}
	return true, nil
}

func ptr(s string) *string { return &s }
