package projections

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// switchOver flips the pointer to the new schema, retrying when a lock wait
// times out (an analyst's long query on a view, a stuck batch).
func (run *replayRun) switchOver(ctx context.Context) error {
	run.phase.Store(ptr2("switch"))
	var err error
	for attempt := range 10 {
		if err = run.switchTx(ctx); err == nil || !isLockTimeout(err) {
			return err
		}
		run.r.Log.Warn("replay switch timed out waiting for a lock; retrying", "attempt", attempt+1, "err", err)
		if err := run.catchUp(ctx); err != nil {
			return err
		}
	}
	return err
}

// switchTx is the switch transaction:
//  1. the pointer's exclusive advisory lock: pointer-following batches
//     wait, and none is in flight;
//  2. the old schema's offsets table locked EXCLUSIVE: a batch still
//     writing it without the pointer (an old node) finishes first, and none
//     starts;
//  3. the new schema catches up, in this transaction, to the old schema's
//     offsets, which are now final;
//  4. the pointer and the analytics views move to the new schema.
//
// Every batch after the commit reads the new pointer and starts at or below
// the old schema's offsets, which the new schema has reached: nothing is
// missing, and what it has already is skipped.
func (run *replayRun) switchTx(ctx context.Context) error {
	r := run.r
	schema := run.st.Schema()
	// What the transaction applies is lost if it rolls back: so is the
	// position it reached.
	saved := maps.Clone(run.pos)
	err := pgx.BeginFunc(ctx, r.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT set_config('lock_timeout', '%d', true), %s`,
			r.SwitchLockTimeout.Milliseconds(), planSettings)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, pointerLockClass, r.Name); err != nil {
			return fmt.Errorf("pointer lock: %w", err)
		}
		var old, analytics string
		if err := tx.QueryRow(ctx, `SELECT active_schema, analytics_schema FROM parley.read_model WHERE name=$1 FOR UPDATE`,
			r.Name).Scan(&old, &analytics); err != nil {
			return fmt.Errorf("read-model pointer: %w", err)
		}
		if old == schema {
			return nil
		}
		run.switchedFrom = old
		if err := notOlder(ctx, tx, old, schema); err != nil {
			return err
		}
		if err := run.catchUpToOld(ctx, tx, old); err != nil {
			return err
		}
		if err := copyGrants(ctx, tx, old, schema); err != nil {
			return fmt.Errorf("grants: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE parley.read_model SET previous_schema=active_schema, active_schema=$2,
			switched_at=now() WHERE name=$1`, r.Name, schema); err != nil {
			return fmt.Errorf("switch pointer: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT parley.point_analytics($1, $2)`, analytics, schema); err != nil {
			return fmt.Errorf("analytics views: %w", err)
		}
		r.Log.Info("read models switching", "from", old, "to", schema, "analytics", analytics)
		return nil
	})
	if err != nil {
		run.pos = saved
	}
	return err
}

// catchUpToOld applies, inside tx, what the old schema has beyond the new.
func (run *replayRun) catchUpToOld(ctx context.Context, tx pgx.Tx, old string) error {
	var present bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{old, "projector_offsets"}.Sanitize()).Scan(&present); err != nil {
		return err
	}
	if !present {
		return nil // the old schema is gone: nobody writes it
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{old, "projector_offsets"}.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock %s.projector_offsets: %w", old, err)
	}
	live, err := offsetsIn(ctx, tx, old, run.r.Topic)
	if err != nil {
		return err
	}
	return run.applyInTx(ctx, tx, live)
}

// notOlder refuses to switch to a schema at an older migration than the
// active one: a newer release migrated the active schema while the replay
// ran, and its nodes' statements would fail on the rebuilt one. The
// version row is held (FOR SHARE) until the switch commits, so a migrate
// cannot slip in between.
func notOlder(ctx context.Context, tx pgx.Tx, old, schema string) error {
	var both bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`,
		pgx.Identifier{old, "schema_migrations"}.Sanitize(), pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&both); err != nil {
		return fmt.Errorf("migration versions: %w", err)
	}
	if !both {
		return nil // the old schema predates its migrations table, or is gone
	}
	var oldV, newV *int64
	if err := tx.QueryRow(ctx, `SELECT
		(SELECT version FROM `+pgx.Identifier{old, "schema_migrations"}.Sanitize()+` LIMIT 1 FOR SHARE),
		(SELECT version FROM `+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+` LIMIT 1)`).Scan(&oldV, &newV); err != nil {
		return fmt.Errorf("migration versions: %w", err)
	}
	if oldV != nil && newV != nil && *newV < *oldV {
		return fmt.Errorf("the active schema %s is at migration %d and the rebuilt %s at %d: a newer release migrated it during the replay; replay again with that release's chatctl",
			old, *oldV, schema, *newV)
	}
	return nil
}

// copyGrants gives the roles that use the old schema the same privileges
// on the new one (schema, and each table or view of the same name) where
// they lack them. Default privileges (chatctl roles) cover a replay run by
// the schemas' owner; one run by another role (a superuser) creates a
// schema nobody else may read: switched to as it is, every gateway read and
// projector batch would fail with permission denied.
func copyGrants(ctx context.Context, tx pgx.Tx, old, schema string) error {
	rows, err := tx.Query(ctx, `
		SELECT '', pg_get_userbyid(a.grantee)::text, a.privilege_type
		FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
		WHERE n.nspname = $1 AND a.grantee <> 0 AND a.grantee <> n.nspowner
		  AND NOT has_schema_privilege(a.grantee, $2, a.privilege_type)
		UNION ALL
		SELECT c.relname, pg_get_userbyid(a.grantee)::text, a.privilege_type
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') AND a.grantee <> 0 AND a.grantee <> c.relowner
		  AND to_regclass(format('%I.%I', $2::text, c.relname)) IS NOT NULL
		  AND NOT has_table_privilege(a.grantee, format('%I.%I', $2::text, c.relname), a.privilege_type)`, old, schema)
	if err != nil {
		return err
	}
	type grant struct{ rel, role, priv string }
	grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.rel, &g.role, &g.priv)
	})
	if err != nil {
		return err
	}
	for _, g := range grants {
		on := "SCHEMA " + pgx.Identifier{schema}.Sanitize()
		if g.rel != "" {
			on = "TABLE " + pgx.Identifier{schema, g.rel}.Sanitize()
		}
		// privilege_type is a keyword from the catalog (SELECT, USAGE, ...).
		if _, err := tx.Exec(ctx, "GRANT "+g.priv+" ON "+on+" TO "+pgx.Identifier{g.role}.Sanitize()); err != nil {
			return fmt.Errorf("grant %s on %s to %s: %w", g.priv, on, g.role, err)
		}
	}
	return nil
}

func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}
