// Package projections builds Parley's Postgres read models from the log and
// answers the read-side queries (history, sync, conversation lists).
package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/domain"
)

// Store reads and writes the read models of one active schema. Readers
// follow SetSchema at once, which is how a replay switches them atomically.
type Store struct {
	pool  *pgxpool.Pool
	topic string
	// schema is shared by the stores Writing derives from one another, so
	// a switch one of them finds moves the readers of all.
	schema *atomic.Pointer[string]
	// name keys the active read-model pointer (the bootstrap schema); pinned
	// stores write their schema only. See replay_active.go.
	name   string
	pinned bool
	// control: a batch found the control schema (replay_active.go).
	control atomic.Bool
	// retried counts batches applied again guarded (GuardedRetries).
	retried atomic.Int64
	// OnSetAside, if set, is told of each event set aside (setaside.go).
	OnSetAside func(r Record, cause error)
	// OnGuardedRetry, if set, is told of each batch applied again guarded.
	OnGuardedRetry func()
	// OnRetry, if set, is told of each failed attempt of a Pipeline's
	// batch that it retries after backoff.
	OnRetry func(err error, backoff time.Duration)
	// OnGap, if set, is told at once of a Pipeline's batch that does not
	// continue the stored offsets (ErrOffsetGap), to re-read from them.
	OnGap func(err error)
	// ids are the message ids written (sent_ids.go); nil: every messages
	// insert is ON CONFLICT.
	ids *sentIDs
	// rebuild is set on a replay applier's store (replay_applier.go).
	rebuild *rebuildState
	// part is what Apply writes (Writing).
	part Part
}

// NewStore serves the read models in schema.
func NewStore(pool *pgxpool.Pool, schema, topic string) *Store {
	s := &Store{pool: pool, topic: topic, name: schema, ids: newSentIDs(), schema: new(atomic.Pointer[string])}
	s.SetSchema(schema)
	return s
}

// committed keeps what a batch wrote, once its transaction has committed:
// the message ids (sent_ids.go) and, in a replay's applier, the last seqs
// it defers (replay_applier.go).
func (s *Store) committed(w written) {
	s.ids.remember(s.Schema(), w.ids)
	if s.rebuild != nil {
		s.rebuild.keep(w.last)
	}
}

// SetSchema switches every later query to schema.
func (s *Store) SetSchema(schema string) { s.schema.Store(&schema) }

// Schema is the schema queries use now.
func (s *Store) Schema() string { return *s.schema.Load() }

// Pool is the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// q replaces every {t} in a query with the active schema, quoted.
func (s *Store) q(sql string) string {
	return strings.ReplaceAll(sql, "{s}", pgx.Identifier{s.Schema()}.Sanitize())
}

// Ping checks Postgres.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres ping: %w", err)
	}
	return nil
}

// unavailable wraps a database error: the caller may retry later.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", domain.ErrUnavailable, what, err)
}

// ResumeOffsets returns, for each partition, the next offset the active read
// models need (0 where none was applied): the projector's consumer starts
// there, whatever its group committed, so a restored or rebuilt database is
// caught up from the log instead of skipped.
func (s *Store) ResumeOffsets(ctx context.Context, partitions []int32) (map[int32]int64, error) {
	if err := s.RefreshActive(ctx); err != nil {
		return nil, err
	}
	stored, err := offsetsOf(ctx, s.pool, s.Schema(), s.offsetsTable(), s.topic)
	if err != nil {
		return nil, unavailable("resume offsets", err)
	}
	next := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		next[p] = stored[p]
	}
	return next, nil
}

// ProjectedOffset is the next offset the store will apply in partition (of
// search_offsets for the search part, else of projector_offsets).
func (s *Store) ProjectedOffset(ctx context.Context, partition int32) (int64, error) {
	var off int64
	err := s.pool.QueryRow(ctx, s.q(`SELECT next_offset FROM {s}.`+s.offsetsTable()+` WHERE topic=$1 AND partition=$2`),
		s.topic, partition).Scan(&off)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("projected offset", err)
	}
	return off, nil
}
