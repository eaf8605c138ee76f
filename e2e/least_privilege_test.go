package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/projections"
)

// Parley runs with the credentials the manifests give each role and
// nothing more: the gateway and the fan-out reach Redis as an ACL user
// limited to the deployment's prefix (redisstore.ACLRules) and Postgres as
// read-only roles, the projector reaches Postgres as the writing role and
// no Redis at all. Messages still flow end to end (live pushes, history,
// lists, rows), and an analyst sees them in the analytics views only.
func TestLeastPrivilegeDeployment(t *testing.T) {
	env := testenv.New(t)
	roles := env.WithRoles()
	ctx := context.Background()

	admin, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() }) // after the user's deletion below
	user, password := "parley_e2e_"+env.Suffix, fmt.Sprintf("pw-%s-%d", env.Suffix, time.Now().UnixNano())
	args := []any{"ACL", "SETUSER", user, "on", ">" + password}
	for _, r := range redisstore.ACLRules(env.Cfg.RedisPrefix) {
		args = append(args, r)
	}
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Do(context.Background(), "ACL", "DELUSER", user).Err(); err != nil {
			t.Errorf("delete the ACL user: %v", err)
		}
	})
	u, err := url.Parse(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)

	base := env.Cfg
	start := func(role, db, redis string) *testenv.Node {
		env.Cfg.DatabaseURL, env.Cfg.RedisURL = db, redis
		defer func() { env.Cfg = base }()
		return env.StartNode(role)
	}
	gw := start("gateway", roles.DSN["gateway"], u.String())
	start("fanout", roles.DSN["fanout"], u.String())
	start("projector", roles.DSN["projector"], "redis://127.0.0.1:1/0") // nothing listens there

	alice, bob := dial(t, env, gw, "alice"), dial(t, env, gw, "bob")
	conv := createGroup(t, alice, "bob")
	nextPush(t, bob, domain.PushConversationCreated)
	const n = 5
	for i := range n {
		request[msgReply](t, alice, "message.send", map[string]any{"conversation_id": conv.ConversationID,
			"client_msg_id": fmt.Sprintf("m%d", i), "body": fmt.Sprintf("hello %d", i)})
		nextPush(t, bob, domain.PushMessageNew)
	}
	testenv.WaitFor(t, 20*time.Second, "the projector's rows", func() bool {
		return env.Count(`SELECT count(*) FROM {s}.messages WHERE conversation_id=$1`, conv.ConversationID) == n
	})
	h := request[struct{ Messages []domain.Message }](t, bob, "history", map[string]any{"conversation_id": conv.ConversationID})
	if len(h.Messages) != n {
		t.Fatalf("history: %d messages, want %d", len(h.Messages), n)
	}
	list := request[struct{ Conversations []domain.Conversation }](t, bob, "conversation.list", map[string]any{})
	if len(list.Conversations) != 1 || list.Conversations[0].ConversationID != conv.ConversationID {
		t.Fatalf("conversation.list: %+v", list.Conversations)
	}

	analyst, err := pgstore.Open(ctx, roles.DSN["analyst"], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close()
	analytics := pgx.Identifier{projections.AnalyticsSchemaFor(env.Cfg.DBSchema)}.Sanitize()
	var got int
	if err := analyst.QueryRow(ctx, `SELECT messages FROM `+analytics+`.top_conversations WHERE conversation_id=$1`,
		conv.ConversationID).Scan(&got); err != nil || got != n {
		t.Fatalf("analyst: top_conversations says %d messages (%v), want %d", got, err, n)
	}
	_, err = analyst.Exec(ctx, `SELECT body FROM `+pgx.Identifier{env.Cfg.DBSchema}.Sanitize()+`.messages LIMIT 1`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("analyst reading the live messages table: %v, want permission denied", err)
	}
	// No command of any node was refused on the way (background work
	// included: route upkeep, lag, pointer refresh).
	if !strings.Contains(env.Logs.String(), "node started") {
		t.Fatal("no node log captured")
	}
	for _, refusal := range []string{"NOPERM", "42501", "permission denied"} {
		if strings.Contains(env.Logs.String(), refusal) {
			t.Errorf("a node's log shows %q: a role lacks a privilege Parley uses", refusal)
		}
	}
}
