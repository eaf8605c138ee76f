package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// deadLetters lists the events the projector set aside in the active read
// models, or shows one whole (--show PARTITION:OFFSET). To apply them after
// a fix: deploy it and run chatctl replay (docs/reliability.md).
func deadLetters(ctx context.Context, cfg config.Config, args []string) error {
	fs := flag.NewFlagSet("dead-letters", flag.ContinueOnError)
	limit := fs.Int("limit", 100, "list at most this many, newest first")
	show := fs.String("show", "", "show one event whole: PARTITION:OFFSET")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := pgstore.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := projections.NewStore(pool, cfg.DBSchema, cfg.Topic)
	if err := st.RefreshActive(ctx); err != nil {
		return err
	}
	if *show != "" {
		var p int32
		var o int64
		if _, err := fmt.Sscanf(*show, "%d:%d", &p, &o); err != nil {
			return fmt.Errorf("--show wants PARTITION:OFFSET, got %q", *show)
		}
		d, found, err := st.DeadLetterAt(ctx, p, o)
		if err != nil {
			return err
		}
		if !found {
			return errors.New("no event set aside at " + *show)
		}
		fmt.Printf("partition %d offset %d (seq %d)\nconversation %s\nevent %s (%s)\nset aside %s\nerror: %s\npayload: %s\n",
			d.Partition, d.Offset, domain.SeqOf(d.Offset), d.ConversationID, d.EventID, d.Type, d.SetAsideAt.Format(time.RFC3339), d.Error, d.Payload)
		return nil
	}
	all, err := st.DeadLetters(ctx, *limit)
	if err != nil {
		return err
	}
	fmt.Printf("%d event(s) set aside in %s (newest first, at most %d)\n", len(all), st.Schema(), *limit)
	for _, d := range all {
		fmt.Printf("%d:%d  %s  %s  %s  %s  %s\n", d.Partition, d.Offset, d.SetAsideAt.Format(time.RFC3339), d.Type,
			d.ConversationID, d.EventID, firstLine(d.Error))
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
