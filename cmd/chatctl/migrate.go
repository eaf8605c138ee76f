package main

import (
	"context"
	"fmt"
	"os"

	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// migrateAll is `chatctl migrate`: the control schema, the read-model schema
// the deployment's pointer names (CHAT_DB_SCHEMA until a replay switched
// it), the pointer itself, and the analytics views over the active schema.
func migrateAll(ctx context.Context, cfg config.Config) (projections.Pointer, error) {
	if err := pgstore.MigrateControl(ctx, cfg.DatabaseURL); err != nil {
		return projections.Pointer{}, err
	}
	pool, err := pgstore.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return projections.Pointer{}, err
	}
	defer pool.Close()
	ptr, ok, err := projections.ReadPointer(ctx, pool, cfg.DBSchema)
	if err != nil {
		return ptr, err
	}
	active := cfg.DBSchema
	if ok {
		active = ptr.Active
	}
	// The schema first: a pointer never names a schema without tables.
	if err := pgstore.Migrate(ctx, cfg.DatabaseURL, active); err != nil {
		return ptr, err
	}
	if ptr, err = projections.RegisterPointer(ctx, pool, cfg.DBSchema); err != nil {
		return ptr, err
	}
	if err := projections.PointAnalytics(ctx, pool, cfg.DBSchema); err != nil {
		return ptr, fmt.Errorf("analytics views: %w", err)
	}
	if coll, isC, err := pgstore.Collation(ctx, pool); err == nil && !isC {
		fmt.Fprintf(os.Stderr, "chatctl: warning: the database collates with %s, not C: its indexes work harder for the same ids (docs/deploy.md, \"Postgres: the database\")\n", coll)
	}
	return ptr, nil
}
