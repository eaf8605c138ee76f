// Command chatd runs a Parley node: the roles named in CHAT_ROLES.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/transport/web"
)

func main() {
	app.QuietSysmon() // first: it may run the process again
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	client, err := web.New(web.Config{Nodes: cfg.WebNodes})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := app.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel, cfg.NodeID)
	app.TuneGC(cfg.Roles, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	a.Web = client
	return a.Run(ctx)
}
