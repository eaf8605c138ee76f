// Package pgstore opens Postgres and applies Parley's migrations.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // pgx5:// driver
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/migrations"
)

// Open creates a pool; it does not fail when Postgres is down, so a gateway
// can start and serve live chat while the database comes back.
func Open(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// Migrate creates schema if needed and applies the read-model migrations in
// it. golang-migrate keeps its version table inside the schema, so each
// schema (live or a replay's) is versioned on its own.
func Migrate(ctx context.Context, dsn, schema string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres connect: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	src, err := iofs.New(migrations.ReadModel, "readmodel")
	if err != nil {
		return fmt.Errorf("migrations source: %w", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	u.Scheme = "pgx5"
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	m, err := migrate.NewWithSourceInstance("iofs", src, u.String())
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate %s up: %w", schema, err)
	}
	return nil
}

// Collation is the current database's collation and whether it compares
// text byte by byte (C or POSIX), as the read models' id keys want: every
// B-tree descent, unique check and index build compares ids, and under a
// libc locale each comparison goes through strcoll (docs/deploy.md).
func Collation(ctx context.Context, pool *pgxpool.Pool) (string, bool, error) {
	var coll string
	err := pool.QueryRow(ctx, `SELECT datcollate FROM pg_database WHERE datname = current_database()`).Scan(&coll)
	if err != nil {
		return "", false, fmt.Errorf("database collation: %w", err)
	}
	return coll, coll == "C" || coll == "POSIX", nil
}
