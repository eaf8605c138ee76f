package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/infra/app"
	chatconfig "github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/projections"
)

// cleanup removes what one bench run left in the shared services: its Kafka
// topic, its Redis keys and its read model (the schemas of a deployment
// named by CHAT_DB_SCHEMA). Only names that start with "bench" are touched,
// so it cannot remove anyone else's data.
func cleanup(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	topic := fs.String("topic", "", "Kafka topic to delete (bench*)")
	prefix := fs.String("redis-prefix", "", "Redis key prefix whose keys to delete (bench*)")
	brokers := fs.String("brokers", "localhost:9092", "Kafka bootstrap servers")
	redisURL := fs.String("redis", "redis://localhost:6379/0", "Redis URL")
	schema := fs.String("schema", "", "read model (CHAT_DB_SCHEMA) whose schemas to drop (bench_*)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if *topic != "" {
		errs = append(errs, deleteTopic(*brokers, *topic))
	}
	if *prefix != "" {
		errs = append(errs, deleteKeys(*redisURL, *prefix))
	}
	if *schema != "" {
		errs = append(errs, dropReadModel(*schema))
	}
	return errors.Join(errs...)
}

// dropReadModel drops the read model named name: its pointer and schemas,
// each of which must be a bench schema. The database is chatd's
// (CHAT_DATABASE_URL).
func dropReadModel(name string) error {
	cfg, err := chatconfig.Parse()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	err = projections.DropReadModel(ctx, pool, name, func(schema string) error {
		if !strings.HasPrefix(schema, "bench_") {
			return fmt.Errorf("refusing to drop schema %q: not a bench schema", schema)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println("dropped read model", name)
	return nil
}

func deleteTopic(brokers, topic string) error {
	if !strings.HasPrefix(topic, "bench") {
		return fmt.Errorf("refusing to delete topic %q: not a bench topic", topic)
	}
	// The brokers come from the flag, their security from the environment
	// (CHAT_KAFKA_SASL_*, CHAT_KAFKA_TLS*), as for chatd.
	cfg, err := chatconfig.Parse()
	if err != nil {
		return err
	}
	cfg.KafkaBrokers = strings.Split(brokers, ",")
	admin, err := kafkalog.NewAdmin(app.KafkaConfig(cfg).WithClientID("parley-bench-cleanup"))
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	fmt.Println("deleted topic", topic)
	return nil
}

// deleteKeys unlinks the bench system's keys.
func deleteKeys(redisURL, prefix string) error {
	if !strings.HasPrefix(prefix, "bench") {
		return fmt.Errorf("refusing to delete keys of prefix %q: not a bench prefix", prefix)
	}
	rdb, err := redisstore.NewClient(redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := redisstore.DeletePrefix(ctx, rdb, prefix)
	if err != nil {
		return err
	}
	fmt.Printf("deleted %d redis keys %s:*\n", n, prefix)
	return nil
}
