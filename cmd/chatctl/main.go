// Command chatctl is Parley's operator tool: migrate, topics, roles, replay, token.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/transport/auth"
)

const usage = `usage: chatctl <command> [flags]

commands:
  migrate            apply the Postgres migrations: control schema, the active
                     read-model schema (CHAT_DB_SCHEMA until a replay), analytics views
  topics             create the Kafka events topic (CHAT_KAFKA_TOPIC)
  roles              create or update Parley's least-privilege Postgres roles and
                     grant them on the deployment's schemas, after migrate (roles -h)
  replay [--dry-run] rebuild every read model from the start of the log into a
                     fresh schema and switch to it (replay -h for flags)
  drop-schema NAME   drop a read-model schema no longer in use (after a replay)
  dead-letters       list the events the projector set aside (--show P:O for one whole);
                     to apply them after a fix, run replay
  token --user ID    mint a JWT with CHAT_JWT_SECRET
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string, args []string) error {
	cfg, err := config.Load()
	if err != nil && cmd != "token" {
		return err
	}
	switch cmd {
	case "migrate":
		ptr, err := migrateAll(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Printf("migrated schema %s (active read models of %s; analytics views in %s)\n", ptr.Active, ptr.Name, ptr.Analytics)
	case "topics":
		created, err := kafkalog.EnsureTopic(app.KafkaConfig(cfg))
		if err != nil {
			return err
		}
		fmt.Printf("topic %s: created=%v partitions=%d replication=%d\n", cfg.Topic, created, cfg.Partitions, cfg.ReplicationFactor)
	case "roles":
		return roles(ctx, cfg, args)
	case "replay":
		return replay(ctx, cfg, args)
	case "drop-schema":
		return dropSchema(ctx, cfg, args)
	case "dead-letters":
		return deadLetters(ctx, cfg, args)
	case "token":
		fs := flag.NewFlagSet("token", flag.ContinueOnError)
		user := fs.String("user", "", "user id (the token's sub)")
		ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
		if err := fs.Parse(args); err != nil {
			return err
		}
		secret := os.Getenv("CHAT_JWT_SECRET")
		if secret == "" {
			return fmt.Errorf("CHAT_JWT_SECRET is required")
		}
		// With the audience and issuer chatd checks (CHAT_JWT_AUDIENCE,
		// CHAT_JWT_ISSUER), when set.
		tok, err := auth.MintFor(secret, *user, *ttl, app.JWTPolicy(cfg))
		if err != nil {
			return err
		}
		fmt.Println(tok)
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}
