package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/migrations"
)

// LatestReadModel is the newest read-model migration this binary carries.
func LatestReadModel() uint {
	files, _ := fs.ReadDir(migrations.ReadModel, "readmodel")
	var latest uint
	for _, f := range files {
		num, _, ok := strings.Cut(f.Name(), "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if ok && err == nil && strings.HasSuffix(f.Name(), ".up.sql") {
			latest = max(latest, uint(v))
		}
	}
	return latest
}

// SchemaVersion is the read-model migration schema is at (golang-migrate's
// version table in it) and whether the last one failed half-way; 0 for a
// schema never migrated.
func SchemaVersion(ctx context.Context, pool *pgxpool.Pool, schema string) (version uint, dirty bool, err error) {
	var v int64
	err = pool.QueryRow(ctx, `SELECT version, dirty FROM `+pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&v, &dirty)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read-model version of %s: %w", schema, err)
	}
	return uint(v), dirty, nil
}

// ErrSchemaBehind: the read models lack migrations this binary expects.
var ErrSchemaBehind = errors.New("read models behind this version")

// CheckVersion reports whether schema's read models are what this binary
// expects: nil when they are at its latest migration or newer (a rolling
// upgrade migrates before the last old node stops), ErrSchemaBehind when
// they lack migrations or the last one failed half-way.
func CheckVersion(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	v, dirty, err := SchemaVersion(ctx, pool, schema)
	if err != nil {
		return err
	}
	latest := LatestReadModel()
	switch {
	case dirty:
		return fmt.Errorf("%w: migration %d of %s failed half-way: fix it, then run `chatctl migrate` (docs/runbook.md)", ErrSchemaBehind, v, schema)
	case v < latest:
		return fmt.Errorf("%w: %s is at migration %d, this version expects %d: run `chatctl migrate` (docs/runbook.md)", ErrSchemaBehind, schema, v, latest)
	}
	return nil
}
