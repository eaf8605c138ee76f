package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// A replay run by a role other than the schemas' owner (a superuser) makes
// a schema no other role may read, where default privileges do not reach:
// the switch gives the roles that used the old schema the same privileges
// on the new one, or every gateway read would fail after it.
func TestReplaySwitchKeepsTheOldSchemasGrants(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	role := "parley_test_reader_" + strings.ToLower(domain.NewID("")[:8])
	for _, q := range []string{`CREATE ROLE ` + role + ` NOLOGIN`, `GRANT USAGE ON SCHEMA ` + live + ` TO ` + role,
		`GRANT SELECT ON ` + live + `.messages, ` + live + `.members TO ` + role} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	recs := newWorkload(3, 4).generate(200)
	if err := projections.NewStore(pool, live, testTopic).Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	rp := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: memSource{recs}, Batch: 100,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	res, err := rp.Run(ctx, projections.ReplayOptions{})
	if err != nil || !res.Switched {
		t.Fatalf("replay: switched %v, err %v", res.Switched, err)
	}
	var usage, messages, members, events bool
	if err := pool.QueryRow(ctx, `SELECT has_schema_privilege($1, $2, 'USAGE'), has_table_privilege($1, $2 || '.messages', 'SELECT'),
		has_table_privilege($1, $2 || '.members', 'SELECT'), has_table_privilege($1, $2 || '.event_log', 'SELECT')`,
		role, res.Schema).Scan(&usage, &messages, &members, &events); err != nil {
		t.Fatal(err)
	}
	if !usage || !messages || !members {
		t.Fatalf("after the switch to %s, %s has usage %v, messages %v, members %v; want what it had on %s", res.Schema, role, usage, messages, members, live)
	}
	if events {
		t.Fatalf("%s got SELECT on event_log, which it did not have on %s", role, live)
	}
}

// A replay by a role other than the active schema's owner is refused
// before it builds anything: the schema it would build, and switch to,
// would be out of reach of the owner's default privileges, of the
// analytics views and of the owner's migrations.
func TestReplayByAnotherRoleThanTheOwnerIsRefused(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	owner := "parley_test_owner_" + strings.ToLower(domain.NewID("")[:8])
	if _, err := pool.Exec(ctx, `CREATE ROLE `+owner+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `ALTER SCHEMA `+live+` OWNER TO current_user`)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+owner)
	})
	if _, err := pool.Exec(ctx, `ALTER SCHEMA `+live+` OWNER TO `+owner); err != nil {
		t.Fatal(err)
	}
	var before int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1 || '_r%'`, live).Scan(&before); err != nil {
		t.Fatal(err)
	}
	rp := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: memSource{newWorkload(3, 4).generate(50)}, Batch: 100,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	_, err := rp.Run(ctx, projections.ReplayOptions{})
	if err == nil || !strings.Contains(err.Error(), "belongs to "+owner) {
		t.Fatalf("a replay by a role that does not own %s: %v, want a refusal naming its owner", live, err)
	}
	var after int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1 || '_r%'`, live).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the refused replay left %d new schemas", after-before)
	}
}

// drop-schema refuses the active schema, and a schema a running replay of
// the read model may be building (an operator taking "<name>_r<time>" for
// a dry run's leftover would throw away hours of rebuild); once no replay
// runs, it drops it.
func TestDropSchemaRefusesWhatIsInUse(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	if _, err := projections.RegisterPointer(ctx, pool, live); err != nil {
		t.Fatal(err)
	}
	if err := projections.DropSchema(ctx, pool, live); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("drop of the active schema: %v, want refused", err)
	}
	building := live + "_r1"
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+building+`; CREATE TABLE `+building+`.projector_offsets (p int)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+building+` CASCADE`) })
	conn, err := pool.Acquire(ctx) // the replay's session, holding its lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, projections.ReplayLockClass, live); err != nil {
		t.Fatal(err)
	}
	err = projections.DropSchema(ctx, pool, building)
	if _, uerr := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, projections.ReplayLockClass, live); uerr != nil {
		t.Fatal(uerr)
	}
	conn.Release()
	if err == nil || !strings.Contains(err.Error(), "running replay") {
		t.Fatalf("drop of %s while a replay of %s runs: %v, want refused", building, live, err)
	}
	if err := projections.DropSchema(ctx, pool, building); err != nil {
		t.Fatalf("drop of %s with no replay running: %v", building, err)
	}
}

// A replay does not switch to a schema older than the active one: a newer
// release that migrated the active schema while the replay ran would find
// its tables missing what its statements use.
func TestReplayDoesNotSwitchToAnOlderMigration(t *testing.T) {
	pool, live := replayable(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `UPDATE `+live+`.schema_migrations SET version = version + 1`); err != nil {
		t.Fatal(err) // as if a newer release had migrated it
	}
	rp := &projections.Replayer{Pool: pool, Topic: testTopic, Name: live, Source: memSource{newWorkload(3, 4).generate(50)}, Batch: 100,
		Migrate: func(ctx context.Context, s string) error { return pgstore.Migrate(ctx, dsn(), s) }}
	res, err := rp.Run(ctx, projections.ReplayOptions{})
	if err == nil || res.Switched || !strings.Contains(err.Error(), "a newer release migrated it") {
		t.Fatalf("switch to an older migration: switched %v, err %v; want refused", res.Switched, err)
	}
	ptr, ok, err := projections.ReadPointer(ctx, pool, live)
	if err != nil || !ok || ptr.Active != live {
		t.Fatalf("after the refused switch the pointer is %+v (%v), want %s", ptr, err, live)
	}
}
