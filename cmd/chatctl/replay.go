package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/term"

	"github.com/parley-chat/parley/infra/app"
	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// replayFlags are the options of `chatctl replay`.
type replayFlags struct {
	DryRun      bool
	DropOld     bool
	Grace       time.Duration
	Schema      string
	Batch       int
	Parallel    int
	MaxLag      int64
	Progress    bool
	MetricsAddr string
}

func parseReplayFlags(args []string) (replayFlags, error) {
	var f replayFlags
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.BoolVar(&f.DryRun, "dry-run", false, "rebuild into a fresh schema and report the differences against the live one; do not switch")
	fs.BoolVar(&f.DropOld, "drop-old", false, "after the switch, wait --grace and drop the previously active schema")
	fs.DurationVar(&f.Grace, "grace", 10*time.Second, "how long readers get to follow the switch before --drop-old drops the old schema")
	fs.StringVar(&f.Schema, "schema", "", "schema to build (default <CHAT_DB_SCHEMA>_r<unix seconds>)")
	fs.IntVar(&f.Batch, "batch", 5000, "events per transaction")
	fs.IntVar(&f.Parallel, "parallel", 2, "concurrent appliers (each takes a share of the partitions)")
	fs.Int64Var(&f.MaxLag, "max-lag", 0, "switch once at most this many events remain (default 2×batch)")
	fs.BoolVar(&f.Progress, "progress", true, "show progress (events/s, lag, ETA) on stderr")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", "", "serve /metrics (parley_replay_progress_ratio) on this address while the replay runs")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("replay: unexpected arguments %v", fs.Args())
	}
	return f, nil
}

func replay(ctx context.Context, cfg config.Config, args []string) error {
	f, err := parseReplayFlags(args)
	if err != nil {
		return err
	}
	log := replayLogger(cfg)
	if f.MetricsAddr != "" {
		stop, err := serveMetrics(f.MetricsAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	res, err := runReplay(ctx, cfg, f, os.Stderr, log)
	printReplay(os.Stdout, res, f, err)
	if err != nil {
		return err
	}
	if f.DryRun {
		for _, d := range res.Diffs {
			if !d.Equal() {
				return errors.New("the rebuilt read models differ from the live ones")
			}
		}
	}
	return nil
}

// replayLogger logs warnings and errors only, as text, so the progress bar
// that shares stderr stays readable; a CHAT_LOG_LEVEL set in the
// environment (debug: each phase and its time) overrides the level.
func replayLogger(cfg config.Config) *slog.Logger {
	if _, set := os.LookupEnv("CHAT_LOG_LEVEL"); set {
		return app.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel, "chatctl")
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// runReplay is `chatctl replay` without the printing: it ensures the control
// schema, rebuilds, switches (unless a dry run) and drops the old schema if
// asked. Progress goes to progressOut (nil: none).
func runReplay(ctx context.Context, cfg config.Config, f replayFlags, progressOut io.Writer, log *slog.Logger) (projections.ReplayResult, error) {
	if err := pgstore.MigrateControl(ctx, cfg.DatabaseURL); err != nil {
		return projections.ReplayResult{}, err
	}
	pool, err := pgstore.Open(ctx, cfg.DatabaseURL, int32(max(f.Parallel, 1)+4))
	if err != nil {
		return projections.ReplayResult{}, err
	}
	defer pool.Close()
	src, err := openKafkaSource(cfg)
	if err != nil {
		return projections.ReplayResult{}, err
	}
	defer src.Close()
	var bar *progressLine
	if f.Progress && progressOut != nil {
		bar = newProgressLine(progressOut)
	}
	r := &projections.Replayer{
		Pool: pool, Topic: cfg.Topic, Name: cfg.DBSchema, Source: src,
		Migrate:  func(ctx context.Context, schema string) error { return pgstore.Migrate(ctx, cfg.DatabaseURL, schema) },
		Batch:    f.Batch,
		Parallel: f.Parallel,
		MaxLag:   f.MaxLag,
		Log:      log,
		Progress: func(p projections.Progress) {
			metrics.ReplayProgress.Set(p.Fraction())
			if bar != nil {
				bar.Update(p)
			}
		},
	}
	res, err := r.Run(ctx, projections.ReplayOptions{Schema: f.Schema, DryRun: f.DryRun})
	if bar != nil {
		bar.Done()
	}
	if err != nil || !res.Switched || !f.DropOld || res.Previous == res.Schema {
		return res, err
	}
	// Nodes that only read follow the pointer within a second or so; give
	// them the grace period before their old schema disappears.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(f.Grace):
	}
	if err := projections.DropSchema(ctx, pool, res.Previous); err != nil {
		return res, fmt.Errorf("drop old schema: %w", err)
	}
	return res, nil
}

// printReplay says what the replay did, or, when it failed (err), what it
// left behind.
func printReplay(w io.Writer, res projections.ReplayResult, f replayFlags, err error) {
	if res.Schema == "" {
		return
	}
	if err != nil && !res.Switched {
		fmt.Fprintf(w, "replay failed; the active read models are unchanged. It left the schema %s behind: drop it with chatctl drop-schema %s\n",
			res.Schema, res.Schema)
		return
	}
	rate := 0.0
	if res.Took > 0 {
		rate = float64(res.Events) / res.Took.Seconds()
	}
	fmt.Fprintf(w, "rebuilt %s from the log: %d events in %s (%.0f events/s)\n", res.Schema, res.Events, res.Took.Round(time.Millisecond), rate)
	switch {
	case f.DryRun:
		fmt.Fprintf(w, "dry run: compared with the live schema %s (not switched)\n", res.Previous)
		fmt.Fprintf(w, "  %-14s %10s %10s %10s %12s\n", "table", "live", "rebuilt", "only live", "only rebuilt")
		for _, d := range res.Diffs {
			if d.Skipped != "" {
				fmt.Fprintf(w, "  %-14s not compared: %s\n", d.Table, d.Skipped)
				continue
			}
			fmt.Fprintf(w, "  %-14s %10d %10d %10d %12d\n", d.Table, d.Live, d.Rebuilt, d.OnlyLive, d.OnlyRebuilt)
			for _, s := range d.Samples {
				fmt.Fprintf(w, "      %s\n", s)
			}
		}
		fmt.Fprintf(w, "drop the rebuilt schema with: chatctl drop-schema %s\n", res.Schema)
	case res.Switched:
		fmt.Fprintf(w, "switched the active read models from %s to %s\n", res.Previous, res.Schema)
		if f.DropOld && err == nil {
			fmt.Fprintf(w, "dropped %s\n", res.Previous)
		} else {
			fmt.Fprintf(w, "drop the old schema with: chatctl drop-schema %s\n", res.Previous)
		}
	}
}

// serveMetrics serves the process's Prometheus metrics until stop.
func serveMetrics(addr string) (stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	return func() { _ = srv.Close() }, nil
}

// dropSchema is `chatctl drop-schema NAME`.
func dropSchema(ctx context.Context, cfg config.Config, args []string) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: chatctl drop-schema NAME")
	}
	pool, err := pgstore.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := projections.DropSchema(ctx, pool, args[0]); err != nil {
		return err
	}
	fmt.Printf("dropped schema %s\n", args[0])
	return nil
}

// kafkaSource reads the events topic for a replay.
type kafkaSource struct{ r *kafkalog.PartitionReader }

func openKafkaSource(cfg config.Config) (*kafkaSource, error) {
	r, err := kafkalog.OpenPartitionReader(app.KafkaConfig(cfg).WithClientID("parley-replay-" + cfg.NodeID))
	if err != nil {
		return nil, err
	}
	return &kafkaSource{r: r}, nil
}

func (k *kafkaSource) Close() error { return k.r.Close() }

func (k *kafkaSource) HighWaterMarks(ctx context.Context) (map[int32]int64, error) {
	return k.r.HighWaterMarks(ctx)
}

func (k *kafkaSource) Read(ctx context.Context, from, to map[int32]int64, size int, handle func([]projections.Record) error) error {
	return k.r.ReadRange(ctx, from, to, size, func(b []kafkalog.Consumed) error {
		return handle(app.DecodeRecords(b))
	})
}

// progressLine draws one status line on a terminal (redrawn in place) or
// prints a line every few seconds elsewhere.
type progressLine struct {
	w       io.Writer
	tty     bool
	last    time.Time
	started bool
}

func newProgressLine(w io.Writer) *progressLine {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressLine{w: w, tty: tty}
}

func (b *progressLine) Update(p projections.Progress) {
	if !b.tty && time.Since(b.last) < 5*time.Second && p.Phase != "done" {
		return
	}
	b.last = time.Now()
	eta := "?"
	if p.Rate > 0 {
		eta = p.ETA().Round(time.Second).String()
	}
	const width = 24
	filled := int(p.Fraction() * width)
	line := fmt.Sprintf("%-8s [%s%s] %5.1f%% %d/%d events  %.0f ev/s  lag %d  ETA %s  %s",
		p.Phase, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*p.Fraction(),
		p.Applied, p.Target, p.Rate, p.Lag(), eta, p.Elapsed.Round(time.Second))
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
	b.started = true
}

func (b *progressLine) Done() {
	if b.tty && b.started {
		fmt.Fprintln(b.w)
	}
}
