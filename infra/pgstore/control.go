package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/migrations"
)

// ControlSchema holds the read-model pointers (migrations/control).
const ControlSchema = "parley"

// controlLock serialises MigrateControl across processes: two first runs at
// once would both try CREATE SCHEMA and one would fail.
const controlLock = 0x70617231 // "par1"

// MigrateControl creates the control schema and applies its migrations.
func MigrateControl(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(controlLock)); err != nil {
		return fmt.Errorf("control lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(controlLock)) //nolint:errcheck // the session ends anyway
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ControlSchema); err != nil {
		return fmt.Errorf("create schema %s: %w", ControlSchema, err)
	}
	src, err := iofs.New(migrations.Control, "control")
	if err != nil {
		return fmt.Errorf("control migrations source: %w", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	u.Scheme = "pgx5"
	q := u.Query()
	q.Set("search_path", ControlSchema)
	u.RawQuery = q.Encode()
	m, err := migrate.NewWithSourceInstance("iofs", src, u.String())
	if err != nil {
		return fmt.Errorf("migrate %s: %w", ControlSchema, err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate %s up: %w", ControlSchema, err)
	}
	return nil
}
