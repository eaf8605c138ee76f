package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// A migrated schema is what the binary expects; one a migration behind, or
// whose last migration failed half-way, is reported with what to run; a
// schema never migrated is at version 0.
func TestCheckVersion(t *testing.T) {
	env := testenv.New(t) // migrates env.Cfg.DBSchema
	ctx := context.Background()
	schema := env.Cfg.DBSchema
	latest := pgstore.LatestReadModel()
	if latest < 12 {
		t.Fatalf("latest read-model migration %d: the embedded files were not read", latest)
	}
	if v, dirty, err := pgstore.SchemaVersion(ctx, env.Pool, schema); err != nil || v != latest || dirty {
		t.Fatalf("migrated schema: version %d dirty %v (%v), want %d", v, dirty, err, latest)
	}
	if err := pgstore.CheckVersion(ctx, env.Pool, schema); err != nil {
		t.Fatalf("migrated schema: %v", err)
	}
	table := pgx.Identifier{schema, "schema_migrations"}.Sanitize()
	for _, c := range []struct {
		set, want string
	}{
		{"version = version - 1", "run `chatctl migrate`"},
		{"version = version + 1, dirty = true", "failed half-way"},
	} {
		if _, err := env.Pool.Exec(ctx, `UPDATE `+table+` SET `+c.set); err != nil {
			t.Fatal(err)
		}
		err := pgstore.CheckVersion(ctx, env.Pool, schema)
		if !errors.Is(err, pgstore.ErrSchemaBehind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("after %s: %v, want ErrSchemaBehind saying %q", c.set, err, c.want)
		}
		if _, err := env.Pool.Exec(ctx, `UPDATE `+table+` SET version = $1, dirty = false`, latest); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Pool.Exec(ctx, `UPDATE `+table+` SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if err := pgstore.CheckVersion(ctx, env.Pool, schema); err != nil {
		t.Errorf("a schema newer than the binary (a rolling upgrade): %v, want nil", err)
	}
	if v, _, err := pgstore.SchemaVersion(ctx, env.Pool, "no_such_schema_"+testenv.RandHex(4)); err != nil || v != 0 {
		t.Errorf("a schema never migrated: version %d, %v; want 0", v, err)
	}
}
