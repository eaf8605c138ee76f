package pgstore_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
)

// TestCollation tells a database whose ids compare byte by byte (as
// services:up and the deploy files create it) from one under a libc locale.
func TestCollation(t *testing.T) {
	env := testenv.New(t)
	ctx := context.Background()
	for _, c := range []struct {
		collate string
		isC     bool
	}{{"C", true}, {"C.UTF-8", false}} {
		db := "coll_" + testenv.RandHex(4)
		if _, err := env.Pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+
			" TEMPLATE template0 LC_COLLATE "+quote(c.collate)); err != nil {
			t.Fatalf("create a database collating with %s: %v", c.collate, err)
		}
		t.Cleanup(func() { env.Pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()) })
		u, err := url.Parse(env.Cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + db
		pool := connect(t, u.String())
		got, isC, err := pgstore.Collation(ctx, pool)
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.collate || isC != c.isC {
			t.Errorf("database created with LC_COLLATE %s: Collation = %q, %v; want %q, %v", c.collate, got, isC, c.collate, c.isC)
		}
	}
}

func quote(s string) string { return "'" + s + "'" }
