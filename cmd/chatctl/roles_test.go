package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/parley-chat/parley/internal/testenv"
)

// `chatctl roles --passwords DIR` sets the password of each login role
// whose file is there (a mounted Secret, trailing newline and all) and
// leaves the others alone.
func TestRolesCommand(t *testing.T) {
	env := testenv.New(t)
	r := env.WithRoles()
	ctx := context.Background()
	verifier := func(login string) string {
		var v string
		if err := env.Pool.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname=$1`, r.Name(login)).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	gw, an := verifier("gateway"), verifier("analyst")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gateway"), []byte("a-fresh-gateway-password-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := env.Cfg
	cfg.DatabaseURL = r.DSN["owner"]
	if err := roles(ctx, cfg, []string{"--prefix", r.Prefix, "--passwords", dir}); err != nil {
		t.Fatal(err)
	}
	if verifier("gateway") == gw {
		t.Error("the gateway's password did not change")
	}
	if verifier("analyst") != an {
		t.Error("the analyst's password changed without a file")
	}
	if err := roles(ctx, cfg, []string{"--prefix", r.Prefix, "--passwords", filepath.Join(dir, "missing")}); err != nil {
		t.Errorf("an empty password directory: %v", err)
	}
}
