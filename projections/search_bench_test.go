package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/projections"
)

// BenchmarkSearch measures search over a read model of PARLEY_BENCH_MESSAGES
// messages (default 100 000; the figures in docs/benchmarks.md use
// 1 000 000): 10 000 group conversations of 10 members among 1 000 users,
// bodies of 8 words drawn (skewed, as language is) from a vocabulary of
// 5 000. Each iteration runs 300 searches of one or two words by random
// users over all their conversations, and reports p50 and p99.
//
//	PARLEY_BENCH_MESSAGES=1000000 go test -run '^$' -bench BenchmarkSearch -benchtime 1x -timeout 30m ./projections/
func BenchmarkSearch(b *testing.B) {
	pool := openPool(b)
	n := benchEvents("PARLEY_BENCH_MESSAGES", 100_000)
	schema := freshSchema(b, pool)
	ctx := context.Background()
	vocab := make([]string, 5000)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range vocab {
		vocab[i] = fmt.Sprintf("%c%c%cword%d", 'a'+rng.IntN(26), 'a'+rng.IntN(26), 'a'+rng.IntN(26), i)
	}
	start := time.Now()
	fill(b, pool, schema, n, vocab)
	b.Logf("%d messages loaded and indexed in %v", n, time.Since(start).Round(time.Second))
	st := projections.NewStore(pool, schema, testTopic)
	explain(b, pool, schema, vocab[3])
	for b.Loop() {
		lat := make([]time.Duration, 0, 300)
		found := 0
		for range 300 {
			q := vocab[int(float64(len(vocab))*rng.Float64()*rng.Float64())]
			if rng.IntN(2) == 0 {
				q += " " + vocab[int(float64(len(vocab))*rng.Float64()*rng.Float64())]
			}
			user := fmt.Sprintf("u%d", rng.IntN(1000))
			t0 := time.Now()
			page, err := st.Search(ctx, user, projections.SearchQuery{Query: q})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			found += len(page.Messages)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(found)/float64(len(lat)), "results/search")
	}
}

// fill writes n messages, their conversations' members and their search
// rows, and builds the search index after the rows (as a replay does).
func fill(b *testing.B, pool *pgxpool.Pool, schema string, n int, vocab []string) {
	ctx := context.Background()
	s := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		`DROP INDEX ` + s + `.message_search_tsv`,
		`INSERT INTO ` + s + `.members (conversation_id, user_id, is_member, joined_seq, change_seq)
			SELECT 'c' || c, 'u' || ((c * 7 + k * 101) % 1000), true, 1, 1
			FROM generate_series(0, 9999) c, generate_series(0, 9) k ON CONFLICT DO NOTHING`,
		`INSERT INTO ` + s + `.messages (conversation_id, seq, message_id, sender_id, client_msg_id, body, sent_at, version_seq)
			SELECT 'c' || (i % 10000), i + 1, 'm' || i, 'u' || (i % 1000), 'k' || i,
				(SELECT string_agg(($1::text[])[1 + floor(random() * random() * 5000)::int], ' ')
				   FROM generate_series(1, 8) w WHERE w > i - i),
				now() - ($2 - i) * interval '1 second', i + 1
			FROM generate_series(0, $2 - 1) i`,
		`INSERT INTO ` + s + `.message_search (conversation_id, message_id, tsv)
			SELECT conversation_id, message_id, to_tsvector('` + s + `.parley_search'::regconfig, body) FROM ` + s + `.messages`,
		`CREATE INDEX message_search_tsv ON ` + s + `.message_search USING gin (tsv)`,
		`ANALYZE ` + s + `.messages`,
		`ANALYZE ` + s + `.message_search`,
		`ANALYZE ` + s + `.members`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = []any{vocab, n}
		}
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%.60s: %v", sql, err)
		}
	}
}

// explain logs the plan of a search (docs/read-models.md shows it).
func explain(b *testing.B, pool *pgxpool.Pool, schema, word string) {
	s := pgx.Identifier{schema}.Sanitize()
	rows, err := pool.Query(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
		SELECT m.conversation_id, m.message_id, m.seq FROM `+s+`.message_search ms
		JOIN `+s+`.messages m ON m.conversation_id = ms.conversation_id AND m.message_id = ms.message_id
		JOIN `+s+`.members me ON me.conversation_id = m.conversation_id AND me.user_id = 'u1' AND me.is_member
		WHERE ms.tsv @@ plainto_tsquery('`+s+`.parley_search'::regconfig, $1)
		  AND NOT m.deleted
		ORDER BY m.sent_at DESC, m.conversation_id DESC, m.seq DESC LIMIT 21`, word)
	if err != nil {
		b.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("EXPLAIN of a search for %q by u1:\n%s", word, strings.Join(lines, "\n"))
}
