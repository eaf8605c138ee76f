package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

func connect(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgstore.Open(context.Background(), dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// denied reports whether err is Postgres's insufficient_privilege.
func denied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

func records() []projections.Record {
	at := time.Now().UTC().Truncate(time.Millisecond)
	ev := func(off int64, typ string, payload any) projections.Record {
		data, _ := json.Marshal(payload)
		return projections.Record{Partition: 0, Offset: off, Event: domain.Event{ID: fmt.Sprintf("e%d", off), Type: typ,
			ConversationID: "c1", Actor: "alice", At: at, Data: data}}
	}
	return []projections.Record{
		ev(0, domain.EvConversationCreated, domain.ConversationCreated{Kind: "group", Title: "t", Members: []string{"alice", "bob"}}),
		ev(1, domain.EvMessageSent, domain.MessageSent{MessageID: "m1", ClientMsgID: "k1", Body: "hello"}),
		ev(2, domain.EvMessageSent, domain.MessageSent{MessageID: "m2", ClientMsgID: "k2", Body: "again"}),
	}
}

// The roles of a deployment set up as in production (migrated by its owner,
// then pgstore.SetupRoles): the projector applies batches, gateways and
// the fan-out read what Parley reads and cannot write, and analysts read
// the analytics views but no live table. Fresh role names and schemas on
// the shared Postgres, dropped afterwards.
func TestLeastPrivilegeRoles(t *testing.T) {
	env := testenv.New(t)
	roles := env.WithRoles()
	ctx := context.Background()
	schema := env.Cfg.DBSchema
	analytics := projections.AnalyticsSchemaFor(schema)
	q := func(s string) string {
		return strings.NewReplacer("{s}", pgx.Identifier{schema}.Sanitize(), "{a}", pgx.Identifier{analytics}.Sanitize()).Replace(s)
	}

	// The projector writes through Parley's own code: history, then the
	// search projection, as its two stages do.
	projector := projections.NewStore(connect(t, roles.DSN["projector"]), schema, env.Cfg.Topic)
	for _, part := range []projections.Part{projections.PartHistory, projections.PartSearch} {
		if err := projector.Writing(part).Apply(ctx, records()); err != nil {
			t.Fatalf("the projector role cannot apply a batch (part %d): %v", part, err)
		}
	}

	// Gateways and the fan-out read through Parley's own code.
	for _, who := range []string{"gateway", "fanout"} {
		pool := connect(t, roles.DSN[who])
		s := projections.NewStore(pool, schema, env.Cfg.Topic)
		if err := s.RefreshActive(ctx); err != nil { // the control schema's pointer
			t.Fatalf("%s: read-model pointer: %v", who, err)
		}
		msgs, _, err := s.Messages(ctx, "c1", projections.Page{Limit: 10})
		if err != nil || len(msgs) != 2 {
			t.Fatalf("%s: history %d messages, %v", who, len(msgs), err)
		}
		page, err := s.ConversationsOf(ctx, "bob", "", 10)
		if err != nil || len(page.Conversations) != 1 {
			t.Fatalf("%s: conversation list %+v, %v", who, page, err)
		}
		if ms, err := s.Memberships(ctx, "c1"); err != nil || len(ms) != 2 {
			t.Fatalf("%s: memberships %v, %v", who, ms, err)
		}
		if off, err := s.ProjectedOffset(ctx, 0); err != nil || off != 3 {
			t.Fatalf("%s: projected offset %d, %v", who, off, err)
		}
		// Gateways note who was online each day (presence_days): the one
		// row they may insert.
		if err := s.RecordOnline(ctx, []string{"alice"}, time.Now()); err != nil {
			t.Fatalf("%s: record a day online: %v", who, err)
		}
		for _, w := range []string{
			`INSERT INTO {s}.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq)
			 VALUES ('c1', 99, 'mx', 'mallory', 'kx', 'forged', now(), 99)`,
			`UPDATE {s}.members SET is_member = true WHERE user_id = 'bob'`,
			`DELETE FROM {s}.event_log`,
			`UPDATE {s}.projector_offsets SET next_offset = 0`,
			`UPDATE parley.read_model SET active_schema = 'elsewhere'`,
			`TRUNCATE {s}.messages`,
			`CREATE TABLE {s}.x (i int)`,
			`DROP TABLE {s}.event_log`,
			`CREATE OR REPLACE VIEW {a}.messages AS SELECT 1`,
		} {
			if _, err := pool.Exec(ctx, q(w)); !denied(err) {
				t.Errorf("%s: %s: %v, want permission denied", who, strings.Fields(w)[0], err)
			}
		}
	}

	// The projector writes rows, nothing else.
	pp := connect(t, roles.DSN["projector"])
	for _, w := range []string{`DELETE FROM {s}.messages`, `TRUNCATE {s}.event_log`, `DROP TABLE {s}.messages`,
		`CREATE TABLE {s}.x (i int)`, `UPDATE parley.read_model SET active_schema = 'elsewhere'`} {
		if _, err := pp.Exec(ctx, q(w)); !denied(err) {
			t.Errorf("projector: %s: %v, want permission denied", w, err)
		}
	}

	// Analysts: every analytics view, no live table, no control schema.
	ap := connect(t, roles.DSN["analyst"])
	views := 0
	rows, err := env.Pool.Query(ctx, `SELECT table_name FROM information_schema.views WHERE table_schema=$1`, analytics)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range names {
		views++
		if _, err := ap.Exec(ctx, "SELECT * FROM "+pgx.Identifier{analytics, v}.Sanitize()+" LIMIT 1"); err != nil {
			t.Errorf("analyst: %s.%s: %v", analytics, v, err)
		}
	}
	if views < 12 {
		t.Fatalf("found %d analytics views, want every one of docs/read-models.md", views)
	}
	var n int
	if err := ap.QueryRow(ctx, q(`SELECT count(*) FROM {a}.messages`)).Scan(&n); err != nil || n != 2 {
		t.Errorf("analyst: analytics.messages has %d rows (%v), want 2", n, err)
	}
	if err := ap.QueryRow(ctx, q(`SELECT count(*) FROM {a}.message_search WHERE tsv IS NOT NULL`)).Scan(&n); err != nil || n != 2 {
		t.Errorf("analyst: analytics.message_search has %d rows with words (%v), want 2", n, err)
	}
	for _, table := range []string{"messages", "members", "events", "conversations", "projector_offsets", "dead_letters", "unread_counts", "read_cursors", "message_search", "search_offsets"} {
		if _, err := ap.Exec(ctx, q("SELECT * FROM {s}."+table+" LIMIT 1")); !denied(err) {
			t.Errorf("analyst: live %s: %v, want permission denied", table, err)
		}
	}
	if _, err := ap.Exec(ctx, `SELECT * FROM parley.read_model`); !denied(err) {
		t.Errorf("analyst: the control schema: %v, want permission denied", err)
	}
	if _, err := ap.Exec(ctx, q(`INSERT INTO {a}.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq)
		VALUES ('c1', 98, 'my', 'mallory', 'ky', 'forged', now(), 98)`)); !denied(err) {
		t.Errorf("analyst: writing through a view: %v, want permission denied", err)
	}

	// A replay's schema (the owner creates it later) and a new analytics
	// view are covered by the default privileges, with no second run.
	owner := connect(t, roles.DSN["owner"])
	next := schema + "_next"
	t.Cleanup(func() { _, _ = env.Pool.Exec(context.Background(), q(`DROP SCHEMA IF EXISTS `+next+` CASCADE`)) })
	if err := pgstore.Migrate(ctx, roles.DSN["owner"], next); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, q(`CREATE VIEW {a}.later AS SELECT 1 AS one`)); err != nil {
		t.Fatal(err)
	}
	nextStore := projections.NewStore(pp, next, env.Cfg.Topic).In(next)
	if err := nextStore.Apply(ctx, records()); err != nil {
		t.Errorf("projector on a replay's schema: %v", err)
	}
	gp := connect(t, roles.DSN["gateway"])
	if err := gp.QueryRow(ctx, `SELECT count(*) FROM `+next+`.messages`).Scan(&n); err != nil || n != 2 {
		t.Errorf("gateway on a replay's schema: %d rows, %v", n, err)
	}
	if _, err := ap.Exec(ctx, q(`SELECT * FROM {a}.later`)); err != nil {
		t.Errorf("analyst on a new analytics view: %v", err)
	}
	if _, err := ap.Exec(ctx, `SELECT * FROM `+next+`.messages`); !denied(err) {
		t.Errorf("analyst on a replay's schema: %v, want permission denied", err)
	}

	// Idempotent: a second run, here by a superuser, changes nothing but
	// the passwords it is given, and its default privileges are again the
	// owner's (found as the active schema's), not the superuser's. The
	// server stores the SCRAM verifier, never the password.
	roles.Passwords["gateway"] = "a-new-gateway-password-0123456789"
	if err := pgstore.SetupRoles(ctx, env.Cfg.DatabaseURL, roles.Roles); err != nil {
		t.Fatalf("second run: %v", err)
	}
	var grantors []string
	rows, err = env.Pool.Query(ctx, `SELECT DISTINCT r.rolname FROM pg_default_acl d JOIN pg_roles r ON r.oid = d.defaclrole,
		LATERAL aclexplode(d.defaclacl) a JOIN pg_roles g ON g.oid = a.grantee WHERE g.rolname LIKE $1`, roles.Prefix+"\\_%")
	if err == nil {
		grantors, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(grantors) != 1 || grantors[0] != roles.Owner {
		t.Errorf("default privileges for %v (%v), want for the owner %s only", grantors, err, roles.Owner)
	}
	var stored string
	if err := env.Pool.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname=$1`, roles.Name("gateway")).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") || strings.Contains(stored, roles.Passwords["gateway"]) {
		t.Errorf("stored password %q: want a SCRAM-SHA-256 verifier", stored)
	}
	if _, err := gp.Exec(ctx, q(`DELETE FROM {s}.event_log`)); !denied(err) {
		t.Errorf("gateway after the second run: %v, want permission denied", err)
	}
	// A weak password is refused.
	bad := roles.Roles
	bad.Passwords = map[string]string{"gateway": "short"}
	if err := pgstore.SetupRoles(ctx, roles.DSN["owner"], bad); err == nil {
		t.Error("a short password is accepted")
	}
}
