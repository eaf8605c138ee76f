package projections_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// DropReadModel removes a read model whole (its schema, its analytics
// schema and its pointer), and nothing at all when any of its schemas is
// refused.
func TestDropReadModel(t *testing.T) {
	ctx := context.Background()
	env := testenv.New(t)
	name := env.Cfg.DBSchema
	if _, err := projections.RegisterPointer(ctx, env.Pool, name); err != nil {
		t.Fatal(err)
	}
	if err := projections.PointAnalytics(ctx, env.Pool, name); err != nil {
		t.Fatal(err)
	}
	left := func() (schemas, pointers int) {
		t.Helper()
		schemas = env.Count(`SELECT count(*) FROM pg_namespace WHERE nspname::text IN ($1::text, $1::text || '_analytics')`, name)
		pointers = env.Count(`SELECT count(*) FROM parley.read_model WHERE name = $1`, name)
		return
	}
	if s, p := left(); s != 2 || p != 1 {
		t.Fatalf("before: %d schemas, %d pointers; want 2 and 1", s, p)
	}
	refused := errors.New("refused")
	err := projections.DropReadModel(ctx, env.Pool, name, func(s string) error {
		if s == name+"_analytics" {
			return refused
		}
		return nil
	})
	if !errors.Is(err, refused) {
		t.Fatalf("a refused schema: %v", err)
	}
	if s, p := left(); s != 2 || p != 1 {
		t.Fatalf("after a refusal: %d schemas, %d pointers; want all kept", s, p)
	}
	if err := projections.DropReadModel(ctx, env.Pool, name, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s, p := left(); s != 0 || p != 0 {
		t.Fatalf("after the drop: %d schemas, %d pointers left", s, p)
	}
}
