package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/pgstore"
)

// roles is `chatctl roles`: Parley's least-privilege Postgres roles for the
// deployment (pgstore.SetupRoles), run as the schemas' owner after migrate.
func roles(ctx context.Context, cfg config.Config, args []string) error {
	flags := flag.NewFlagSet("roles", flag.ContinueOnError)
	prefix := flags.String("prefix", "parley", "prefix of the role names (<prefix>_read, _write, _analytics, _gateway, ...)")
	owner := flags.String("owner", "", "the role that owns the schemas and runs migrate and replay (default: the active read-model schema's owner)")
	dir := flags.String("passwords", "", "directory of password files named gateway, fanout, projector, analyst;\n"+
		"each file present creates that login role or sets its password (a mounted Secret)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	r := pgstore.Roles{Prefix: *prefix, Owner: *owner, Deployment: cfg.DBSchema, Passwords: map[string]string{}}
	if *dir != "" {
		for l := range pgstore.LoginRoles {
			b, err := os.ReadFile(filepath.Join(*dir, l))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			r.Passwords[l] = strings.TrimRight(string(b), "\r\n")
		}
	}
	if err := pgstore.SetupRoles(ctx, cfg.DatabaseURL, r); err != nil {
		return err
	}
	logins := make([]string, 0, len(r.Passwords))
	for l := range r.Passwords {
		logins = append(logins, r.Name(l))
	}
	slices.Sort(logins)
	set := "no login role"
	if len(logins) > 0 {
		set = strings.Join(logins, ", ")
	}
	fmt.Printf("roles of %s: %s (gateways, fanout), %s (projector), %s (analysts); passwords set for %s\n",
		cfg.DBSchema, r.Name(pgstore.RoleRead), r.Name(pgstore.RoleWrite), r.Name(pgstore.RoleAnalytics), set)
	return nil
}
