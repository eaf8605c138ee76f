package projections_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // pgx5:// driver
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/migrations"
	"github.com/parley-chat/parley/projections"
)

// partitionVersion is the migration that partitions messages and events by
// hash of conversation_id.
const partitionVersion = 4

// migrateTo moves schema to one read-model migration version, up or down.
func migrateTo(t testing.TB, schema string, version uint) {
	t.Helper()
	src, err := iofs.New(migrations.ReadModel, "readmodel")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn())
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "pgx5"
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	m, err := migrate.NewWithSourceInstance("iofs", src, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Migrate(version); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		t.Fatalf("migrate %s to %d: %v", schema, version, err)
	}
}

// projectable gives a schema migrated below the latest version what
// today's projector writes and later migrations added: 0008's reply_to
// (CREATE TABLE LIKE carries it through 0004 up and down) and 0009's
// reactions table (0004 leaves it alone).
func projectable(t testing.TB, pool *pgxpool.Pool, schema string) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE `+pgx.Identifier{schema, "messages"}.Sanitize()+
		` ADD COLUMN IF NOT EXISTS reply_to text, ADD COLUMN IF NOT EXISTS event_id text, ADD COLUMN IF NOT EXISTS sent_body text`); err != nil {
		t.Fatal(err)
	}
	foldShim(t, pool, schema)
	var noReactions, noSearch, noSearchTable bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NULL,
		NOT EXISTS (SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
			WHERE n.nspname = $2 AND c.cfgname = 'parley_search'),
		to_regclass($3) IS NULL`,
		pgx.Identifier{schema, "reactions"}.Sanitize(), schema, pgx.Identifier{schema, "message_search"}.Sanitize()).
		Scan(&noReactions, &noSearch, &noSearchTable); err != nil {
		t.Fatal(err)
	}
	if noReactions {
		runMigrationFile(t, pool, schema, "readmodel/0009_reactions.up.sql")
	}
	if noSearch {
		runMigrationFile(t, pool, schema, "readmodel/0007_search.up.sql")
	}
	if noSearchTable { // the search projection's tables, as the projector writes them
		runMigrationFile(t, pool, schema, "readmodel/0013_search_projection.up.sql")
	}
}

// runMigrationFile runs one read-model migration's file in schema.
func runMigrationFile(t testing.TB, pool *pgxpool.Pool, schema, file string) {
	t.Helper()
	ctx := context.Background()
	sql, err := migrations.ReadModel.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, string(sql))
		return err
	}); err != nil {
		t.Fatalf("%s in %s: %v", file, schema, err)
	}
}

// foldShim gives a schema older than migration 0010 (events still the
// table of every event) what the projector writes since: event_log, here
// a view that inserts into events, and a trigger that copies each
// message_sent folded into messages into events, so the old table stays
// the whole log and compares equal to the new view. Idempotent; call it
// again after a migration that rebuilt messages (0004), which drops the
// trigger.
func foldShim(t testing.TB, pool *pgxpool.Pool, schema string) {
	t.Helper()
	s := pgx.Identifier{schema}.Sanitize()
	_, err := pool.Exec(context.Background(), `
		CREATE OR REPLACE VIEW `+s+`.event_log AS SELECT * FROM `+s+`.events;
		CREATE OR REPLACE FUNCTION `+s+`.fold_into_events() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO `+s+`.events (conversation_id, seq, event_id, type, actor, at, data)
			VALUES (NEW.conversation_id, NEW.seq, NEW.event_id, 'chat.message_sent.v1', NEW.sender_id, NEW.sent_at,
			        jsonb_build_object('message_id', NEW.message_id, 'client_msg_id', NEW.client_msg_id, 'body', NEW.body)
			        || CASE WHEN NEW.reply_to IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('reply_to', NEW.reply_to) END)
			ON CONFLICT DO NOTHING;
			RETURN NULL;
		END $$;
		DROP TRIGGER IF EXISTS fold_into_events ON `+s+`.messages;
		CREATE TRIGGER fold_into_events AFTER INSERT ON `+s+`.messages
			FOR EACH ROW WHEN (NEW.event_id IS NOT NULL) EXECUTE FUNCTION `+s+`.fold_into_events();`)
	if err != nil {
		t.Fatalf("fold shim on %s: %v", schema, err)
	}
}

// relkind returns 'p' for a partitioned table, 'r' for a plain one.
func relkind(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema, table string) (kind string, parts int) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT c.relkind::text,
		(SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid)
		FROM pg_class c WHERE c.oid = to_regclass($1)`, pgx.Identifier{schema, table}.Sanitize()).Scan(&kind, &parts)
	if err != nil {
		t.Fatalf("relkind %s.%s: %v", schema, table, err)
	}
	return kind, parts
}

// TestPartitionMigrationKeepsRowsAndViews converts a read model that holds
// rows, and has views over it in another schema (the analytics views), to
// the partitioned tables and back, applying more of the log after each step,
// and compares it with a read model built partitioned from the start.
func TestPartitionMigrationKeepsRowsAndViews(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	if err := pgstore.MigrateControl(ctx, dsn()); err != nil {
		t.Fatal(err)
	}
	w := newWorkload(42, 4)
	first, second, third := w.generate(1500), w.generate(1500), w.generate(1000)

	// conv: built unpartitioned, then converted; fresh: partitioned from the start.
	conv := "t_" + testenv.RandHex(5)
	t.Cleanup(func() {
		dropSchemas(pool, conv, projections.AnalyticsSchemaFor(conv))
		_, _ = pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, conv)
	})
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{conv}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	migrateTo(t, conv, partitionVersion-1)
	projectable(t, pool, conv)
	fresh := freshSchema(t, pool)
	if k, _ := relkind(t, pool, conv, "messages"); k != "r" {
		t.Fatalf("before the migration messages has relkind %s", k)
	}
	convStore, freshStore := projections.NewStore(pool, conv, testTopic), projections.NewStore(pool, fresh, testTopic)
	applyAll(t, convStore, first, 100)
	applyAll(t, freshStore, first, 100)
	if _, err := projections.RegisterPointer(ctx, pool, conv); err != nil {
		t.Fatal(err)
	}
	if err := projections.PointAnalytics(ctx, pool, conv); err != nil {
		t.Fatal(err)
	}
	analytics := pgx.Identifier{projections.AnalyticsSchemaFor(conv)}.Sanitize()
	viewCounts := func() (msgs, events, unread int) {
		t.Helper()
		err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+analytics+`.messages),
			(SELECT count(*) FROM `+analytics+`.events), (SELECT count(*) FROM `+analytics+`.unread_counts)`).Scan(&msgs, &events, &unread)
		if err != nil {
			t.Fatalf("analytics views: %v", err)
		}
		return msgs, events, unread
	}
	m0, e0, u0 := viewCounts()

	migrateTo(t, conv, partitionVersion)
	foldShim(t, pool, conv)
	for _, table := range []string{"messages", "events"} {
		if k, n := relkind(t, pool, conv, table); k != "p" || n != 16 {
			t.Fatalf("%s: relkind %s with %d partitions, want p with 16", table, k, n)
		}
	}
	if m, e, u := viewCounts(); m != m0 || e != e0 || u != u0 {
		t.Fatalf("views after the conversion: %d/%d/%d rows, before %d/%d/%d", m, e, u, m0, e0, u0)
	}
	requireSame(t, pool, conv, fresh)

	// Edits and deletes of rows copied by the conversion still apply.
	applyAll(t, convStore, second, 100)
	applyAll(t, freshStore, second, 100)
	requireSame(t, pool, conv, fresh)

	migrateTo(t, conv, partitionVersion-1)
	foldShim(t, pool, conv)
	if k, _ := relkind(t, pool, conv, "messages"); k != "r" {
		t.Fatalf("after the down migration messages has relkind %s", k)
	}
	applyAll(t, convStore, third, 100)
	applyAll(t, freshStore, third, 100)
	requireSame(t, pool, conv, fresh)
	if m, _, _ := viewCounts(); m == m0 {
		t.Fatalf("the analytics views no longer follow the table (still %d messages)", m)
	}
}

// BenchmarkPartitionedApply compares the projector's batches on the plain
// tables (migration 3) and the partitioned ones (migration 4), alternating
// rounds so the noise of a shared machine falls on both alike.
//
//	go test -run '^$' -bench BenchmarkPartitionedApply -benchtime 1x ./projections/
func BenchmarkPartitionedApply(b *testing.B) {
	pool := openPool(b)
	n := benchEvents("PARLEY_BENCH_EVENTS", 100_000)
	recs := newWorkload(42, 8).generate(n)
	for round := range 2 {
		for _, v := range []uint{partitionVersion - 1, partitionVersion} {
			name := map[uint]string{partitionVersion - 1: "plain", partitionVersion: "partitioned"}[v]
			b.Run(name+"-round-"+strconv.Itoa(round+1), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					schema := "t_" + testenv.RandHex(5)
					if _, err := pool.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { dropSchemas(pool, schema) })
					migrateTo(b, schema, v)
					projectable(b, pool, schema)
					st := projections.NewStore(pool, schema, testTopic)
					b.StartTimer()
					start, cpu := time.Now(), machineCPU()
					applyAll(b, st, recs, 1000)
					report(b, len(recs), time.Since(start), 1000, cpu)
				}
			})
		}
	}
}
