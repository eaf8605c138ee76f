package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Read-model schemas: their stored offsets, whether one exists, dropping
// one.

// querier is a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// offsetsIn is the next offset of every partition of topic stored in
// schema.
func offsetsIn(ctx context.Context, q querier, schema, topic string) (map[int32]int64, error) {
	return offsetsOf(ctx, q, schema, "projector_offsets", topic)
}

// offsetsOf is offsetsIn of another offsets table (search_offsets).
func offsetsOf(ctx context.Context, q querier, schema, table, topic string) (map[int32]int64, error) {
	rows, err := q.Query(ctx, `SELECT partition, next_offset FROM `+pgx.Identifier{schema, table}.Sanitize()+
		` WHERE topic=$1`, topic)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", schema, err)
	}
	out := map[int32]int64{}
	var p int32
	var off int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error { out[p] = off; return nil }); err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", schema, err)
	}
	return out, nil
}

// liveOffsets is the live schema's next offset per partition, for every
// partition of hwm (0 where it has none yet).
func liveOffsets(ctx context.Context, pool *pgxpool.Pool, schema, topic string, hwm map[int32]int64) (map[int32]int64, error) {
	off, err := offsetsIn(ctx, pool, schema, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := range hwm {
		out[p] = off[p]
	}
	return out, nil
}

func schemaExists(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname=$1)`, schema).Scan(&ok)
	if err != nil {
		return false, unavailable("schema exists", err)
	}
	return ok, nil
}

// DropSchema drops a read-model schema that no deployment uses: neither an
// active schema nor an analytics schema, not one a running replay of a
// read model may be building ("<name>_r..."), and one that has the
// read-model bookkeeping table (so it cannot drop an unrelated schema by
// mistake). The checks and the drop are one transaction that holds the
// pointers (FOR SHARE): a switch in progress finishes first, and a schema
// it has just made active is then refused.
func DropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var inUse, building bool
		err := tx.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM (SELECT active_schema, analytics_schema FROM parley.read_model FOR SHARE) r
			        WHERE $1 IN (r.active_schema, r.analytics_schema)),
			EXISTS (SELECT 1 FROM parley.read_model r JOIN pg_locks l ON l.locktype = 'advisory' AND l.objsubid = 2
			          AND l.classid = $2::int4::oid AND l.objid = hashtext(r.name)::oid AND l.granted
			        WHERE starts_with($1, r.name || '_r'))`, schema, replayLockClass).Scan(&inUse, &building)
		if isUndefined(err) {
			return fmt.Errorf("no read-model pointers (parley.read_model): nothing says which schema is live, so none is dropped; run chatctl migrate first")
		}
		if err != nil {
			return unavailable("read-model pointer", err)
		}
		if inUse {
			return fmt.Errorf("schema %s is in use by a read-model pointer", schema)
		}
		if building {
			return fmt.Errorf("schema %s may be the one a running replay is building; drop it once the replay has ended", schema)
		}
		var isReadModel bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
			pgx.Identifier{schema, "projector_offsets"}.Sanitize()).Scan(&isReadModel); err != nil {
			return unavailable("drop schema", err)
		}
		if !isReadModel {
			return fmt.Errorf("schema %s is not a read-model schema (it has no projector_offsets)", schema)
		}
		if _, err := tx.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		return nil
	})
}

// DropReadModel removes the read model name entirely: its pointer and
// every schema the pointer names (active, previous, analytics) with its
// bootstrap schema. Each schema is first passed to allowed, which refuses
// the drop by returning an error (a bench or test tool's naming rule).
func DropReadModel(ctx context.Context, pool *pgxpool.Pool, name string, allowed func(schema string) error) error {
	p, ok, err := ReadPointer(ctx, pool, name)
	if err != nil {
		return err
	}
	schemas := []string{name}
	if ok {
		schemas = append(schemas, p.Active, p.Analytics)
		if p.Previous != nil {
			schemas = append(schemas, *p.Previous)
		}
	}
	for _, s := range schemas {
		if err := allowed(s); err != nil {
			return err
		}
	}
	for _, s := range schemas {
		if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
			return fmt.Errorf("drop schema %s: %w", s, err)
		}
	}
	if !ok {
		return nil
	}
	if _, err := pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name = $1`, name); err != nil {
		return fmt.Errorf("read-model pointer %s: %w", name, err)
	}
	return nil
}
