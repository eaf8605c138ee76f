package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/infra/redisstore"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testcerts"
	"github.com/parley-chat/parley/internal/testenv"
)

// withUser returns rawURL with user:password as its user info.
func withUser(t *testing.T, rawURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// exercise runs the store's commands (scripts, hashes, idempotency keys)
// and deletes its keys, as a gateway and the fan-out do.
func exercise(t *testing.T, s *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyMembership(ctx, "c1", 3, true, "alice", "bob"); err != nil {
		t.Fatalf("ApplyMembership (EVALSHA): %v", err)
	}
	if err := s.MarkComplete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if ms, known, err := s.Memberships(ctx, "c1"); err != nil || !known || len(ms) != 2 {
		t.Fatalf("Memberships: %v %v %v", ms, known, err)
	}
	member, won, _, _, err := s.ReserveMember(ctx, "c1", "alice", "k1", "p:1", time.Minute)
	if err != nil || !member || !won {
		t.Fatalf("ReserveMember: member %v won %v err %v", member, won, err)
	}
	if err := s.Complete(ctx, "c1", "alice", "k1", "done", time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := redisstore.DeletePrefix(ctx, s.Client(), s.Prefix()); err != nil || n == 0 {
		t.Fatalf("DeletePrefix: %d, %v", n, err)
	}
}

// Parley's Redis code runs as an ACL user with exactly ACLRules: every
// command it needs is allowed, nothing outside its prefix or dangerous is,
// and a wrong password is refused. On the shared Redis, as a fresh user
// deleted afterwards.
func TestACLUser(t *testing.T) {
	env := testenv.New(t)
	ctx := context.Background()
	admin, err := redisstore.NewClient(env.Cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	user, password := "parley_test_"+testenv.RandHex(4), testenv.RandHex(16)
	args := []any{"ACL", "SETUSER", user, "on", ">" + password}
	for _, r := range redisstore.ACLRules(env.Cfg.RedisPrefix) {
		args = append(args, r)
	}
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	defer admin.Do(context.Background(), "ACL", "DELUSER", user)

	s, err := redisstore.Open(ctx, withUser(t, env.Cfg.RedisURL, user, password), env.Cfg.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exercise(t, s)

	rdb := s.Client()
	// The fan-out bus and the hand-off publish on the prefix's sharded
	// channels (subscribing is exercised by their own tests under this ACL
	// in e2e's least-privilege run).
	if err := rdb.Do(ctx, "SPUBLISH", env.Cfg.RedisPrefix+":{handoff}:0", "x").Err(); err != nil {
		t.Errorf("SPUBLISH on the prefix's channel: %v", err)
	}
	for what, cmd := range map[string][]any{
		"a key of another prefix":     {"SET", env.Cfg.RedisPrefix + "x:k", "v"},
		"an unprefixed key":           {"GET", "k"},
		"FLUSHALL":                    {"FLUSHALL"},
		"KEYS":                        {"KEYS", "*"},
		"CONFIG":                      {"CONFIG", "GET", "requirepass"},
		"ACL LIST":                    {"ACL", "LIST"},
		"PUBLISH":                     {"PUBLISH", env.Cfg.RedisPrefix + ":c", "x"},
		"a channel of another prefix": {"SPUBLISH", env.Cfg.RedisPrefix + "x:c", "x"},
		"SCRIPT FLUSH":                {"SCRIPT", "FLUSH"},
		"CLIENT LIST":                 {"CLIENT", "LIST"},
	} {
		err := rdb.Do(ctx, cmd...).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s: %v, want NOPERM", what, err)
		}
	}

	// The connection whose replies are read late logs in as the same user.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	late := redisstore.NewLate(rdb, quiet, "late")
	defer late.Close()
	lateKey := env.Cfg.RedisPrefix + ":late"
	if !late.Write(redisstore.AppendCommand(nil, redisstore.Cmd{"set", lateKey, "v"}), 1) {
		t.Fatal("late write as the ACL user refused")
	}
	poll.Until(t, 5*time.Second, "the late write to land", func() bool { return admin.Get(ctx, lateKey).Val() == "v" })
	admin.Del(ctx, lateKey)
	// ... and is held to its keys: a write outside the prefix is refused.
	refused := metrics.RedisErrors.WithLabelValues("late_refused")
	before := testutil.ToFloat64(refused)
	if !late.Write(redisstore.AppendCommand(nil, redisstore.Cmd{"set", "not-" + env.Cfg.RedisPrefix, "v"}), 1) {
		t.Fatal("late write refused before Redis saw it")
	}
	poll.Until(t, 5*time.Second, "Redis's NOPERM to be counted", func() bool {
		late.Drain()
		return testutil.ToFloat64(refused) > before
	})

	bad, err := redisstore.NewClient(withUser(t, env.Cfg.RedisURL, user, "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	badLate := redisstore.NewLate(bad, quiet, "late")
	defer badLate.Close()
	if badLate.Write(redisstore.AppendCommand(nil, redisstore.Cmd{"ping"}), 1) {
		t.Error("a late connection with a wrong password wrote")
	}
	if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a wrong password: %v, want WRONGPASS", err)
	}
}

// rediss:// with tls_ca reaches a Redis that serves TLS only and has no
// default user (as the compose file runs it: an ACL file from ACLLine);
// without the CA the server's certificate is refused, and without
// credentials the connection is.
func TestTLSAndACLFile(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is needed (go tool task services:up installs it): %v", err)
	}
	dir := t.TempDir()
	ca, cert, key := testcerts.Server(t, dir)
	password, prefix := testenv.RandHex(16), "p"+testenv.RandHex(4)
	acl := filepath.Join(dir, "users.acl")
	lines := "user default off\n" + redisstore.ACLLine("parley", password, prefix) + "\n"
	if err := os.WriteFile(acl, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no",
		"--aclfile", acl, "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	out, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	good := fmt.Sprintf("rediss://parley:%s@127.0.0.1:%d/0?tls_ca=%s&dial_timeout=2s", password, port, url.QueryEscape(ca))
	var s *redisstore.Store
	testenv.WaitFor(t, 10*time.Second, "the TLS Redis to answer", func() bool {
		if s == nil {
			if s, err = redisstore.Open(context.Background(), good, prefix); err != nil {
				t.Fatal(err)
			}
		}
		return s.Ping(context.Background()) == nil
	})
	defer s.Close()
	exercise(t, s)

	for what, c := range map[string]struct{ url, want string }{
		"no CA":            {fmt.Sprintf("rediss://parley:%s@127.0.0.1:%d/0", password, port), "certificate"},
		"no credentials":   {fmt.Sprintf("rediss://127.0.0.1:%d/0?tls_ca=%s", port, url.QueryEscape(ca)), "NOAUTH"},
		"plain TCP to TLS": {fmt.Sprintf("redis://parley:%s@127.0.0.1:%d/0?dial_timeout=2s&read_timeout=2s&max_retries=-1", password, port), ""},
	} {
		rdb, err := redisstore.NewClient(c.url)
		if err != nil {
			t.Fatal(err)
		}
		err = rdb.Ping(context.Background()).Err()
		rdb.Close()
		if err == nil || c.want != "" && !strings.Contains(err.Error(), c.want) && !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("%s: %v, want an error about %q", what, err, c.want)
		}
	}
}
