package testenv

import (
	"context"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/infra/pgstore"
	"github.com/parley-chat/parley/projections"
)

// Roles is a deployment set up as in production (docs/deploy.md, "Postgres
// roles"): its schemas migrated by a fresh owner role, and Parley's
// least-privilege roles with fresh names granted on them.
type Roles struct {
	pgstore.Roles
	Owner string
	// DSN is the connection string of each login role (gateway, fanout,
	// projector, analyst) and of the owner ("owner").
	DSN map[string]string
}

// WithRoles makes e.Cfg.DBSchema a fresh deployment owned by a fresh role,
// migrated as that role, with Parley's roles set up on it; roles and
// schemas are dropped at cleanup. The shared control schema is the
// superuser's here, so the owner is granted what it would own in
// production (its pointer row, the view function).
func (e *Env) WithRoles() *Roles {
	e.T.Helper()
	ctx := context.Background()
	prefix := "t" + e.Suffix + "_" + RandHex(2)
	deployment := "t_" + e.Suffix + "_r"
	r := &Roles{Roles: pgstore.Roles{Prefix: prefix, Deployment: deployment, Passwords: map[string]string{}},
		Owner: prefix + "_owner", DSN: map[string]string{}}
	for l := range pgstore.LoginRoles {
		r.Passwords[l] = RandHex(16)
	}
	dsn := func(user, password string) string {
		u, err := url.Parse(e.Cfg.DatabaseURL)
		if err != nil {
			e.T.Fatal(err)
		}
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	ownerPassword := RandHex(16)
	r.DSN["owner"] = dsn(r.Owner, ownerPassword)
	for l, pw := range r.Passwords {
		r.DSN[l] = dsn(r.Name(l), pw)
	}
	id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	e.T.Cleanup(func() {
		ctx := context.Background()
		_, _ = e.Pool.Exec(ctx, `DELETE FROM parley.read_model WHERE name=$1`, deployment)
		for _, s := range []string{deployment, projections.AnalyticsSchemaFor(deployment)} {
			_, _ = e.Pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+id(s)+" CASCADE")
		}
		// The owner first: its default privileges name the group roles.
		roles := []string{r.Owner}
		for l := range pgstore.LoginRoles {
			roles = append(roles, r.Name(l))
		}
		roles = append(roles, r.Name(pgstore.RoleRead), r.Name(pgstore.RoleWrite), r.Name(pgstore.RoleAnalytics))
		for _, role := range roles {
			if _, err := e.Pool.Exec(ctx, "DROP OWNED BY "+id(role)+" CASCADE"); err != nil {
				e.T.Errorf("drop what %s owns: %v", role, err)
			}
		}
		for _, role := range roles {
			if _, err := e.Pool.Exec(ctx, "DROP ROLE IF EXISTS "+id(role)); err != nil {
				e.T.Errorf("drop role %s: %v", role, err)
			}
		}
	})
	var db string
	if err := e.Pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		e.T.Fatal(err)
	}
	if err := pgstore.MigrateControl(ctx, e.Cfg.DatabaseURL); err != nil {
		e.T.Fatal(err)
	}
	for _, q := range []string{
		"CREATE ROLE " + id(r.Owner) + " LOGIN CREATEROLE PASSWORD '" + ownerPassword + "'",
		"GRANT CREATE ON DATABASE " + id(db) + " TO " + id(r.Owner),
		"GRANT USAGE ON SCHEMA parley TO " + id(r.Owner) + " WITH GRANT OPTION",
		"GRANT SELECT, INSERT, UPDATE ON parley.read_model TO " + id(r.Owner) + " WITH GRANT OPTION",
		"GRANT SELECT, INSERT ON parley.presence_days TO " + id(r.Owner) + " WITH GRANT OPTION",
	} {
		if _, err := e.Pool.Exec(ctx, q); err != nil {
			e.T.Fatalf("%s: %v", q, err)
		}
	}
	// chatctl migrate, as the owner.
	if err := pgstore.Migrate(ctx, r.DSN["owner"], deployment); err != nil {
		e.T.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, r.DSN["owner"])
	if err != nil {
		e.T.Fatal(err)
	}
	defer pool.Close()
	if _, err := projections.RegisterPointer(ctx, pool, deployment); err != nil {
		e.T.Fatal(err)
	}
	if err := projections.PointAnalytics(ctx, pool, deployment); err != nil {
		e.T.Fatal(err)
	}
	// chatctl roles, as the owner.
	if err := pgstore.SetupRoles(ctx, r.DSN["owner"], r.Roles); err != nil {
		e.T.Fatal(err)
	}
	e.Cfg.DBSchema = deployment
	return r
}
