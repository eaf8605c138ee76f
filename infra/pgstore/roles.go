package pgstore

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Roles describes Parley's least-privilege Postgres roles (docs/deploy.md,
// "Postgres roles"). Three group roles (NOLOGIN) carry the privileges:
//
//	<prefix>_read       USAGE on the read-model schemas and the control
//	                    schema, SELECT on their tables: what gateways and
//	                    the fan-out need (history, sync, lists, membership,
//	                    the projected offsets, the active pointer).
//	<prefix>_write      <prefix>_read, and INSERT, UPDATE on the read-model
//	                    tables: the projector. No DELETE, no DDL.
//	<prefix>_analytics  USAGE on the analytics schema and SELECT on its
//	                    views, nothing else: analysts. The views run with
//	                    their owner's rights, so the live tables stay out
//	                    of reach.
//
// Login roles <prefix>_gateway, <prefix>_fanout (read), <prefix>_projector
// (write) and <prefix>_analyst (analytics) are created or given a new
// password for each entry of Passwords; analysts' own login roles can be
// granted <prefix>_analytics instead.
//
// The owner (the role that ran `chatctl migrate`, and runs `chatctl replay`)
// keeps every object. Default privileges for it make the schemas and
// tables it creates later (a replay's chat_r<time> schema, new migrations)
// readable by _read and writable by _write, and new analytics views
// readable by _analytics, so a replay's switch needs no new grants.
type Roles struct {
	Prefix     string            // role name prefix; default "parley"
	Owner      string            // owner of the schemas; default the active read-model schema's owner
	Deployment string            // the deployment's name, its bootstrap schema (CHAT_DB_SCHEMA)
	Passwords  map[string]string // login role suffix (gateway, fanout, projector, analyst) -> password
}

// Group role suffixes and the login roles that belong to each.
const (
	RoleRead      = "read"
	RoleWrite     = "write"
	RoleAnalytics = "analytics"
)

// LoginRoles maps each login role's suffix to its group's suffix.
var LoginRoles = map[string]string{
	"gateway":   RoleRead,
	"fanout":    RoleRead,
	"projector": RoleWrite,
	"analyst":   RoleAnalytics,
}

// Name is the full name of the role with suffix s.
func (r Roles) Name(s string) string {
	p := r.Prefix
	if p == "" {
		p = "parley"
	}
	return p + "_" + s
}

// rolesLock serialises SetupRoles runs (two Jobs at once would race on
// CREATE ROLE).
const rolesLock = 0x70617232 // "par2"

// SetupRoles creates the roles if they are missing and grants their
// privileges on the deployment's schemas; it is idempotent and runs in one
// transaction. Run it after `chatctl migrate`, as the owner (who needs
// CREATEROLE) or as a superuser; the owner is the active read-model
// schema's unless Owner names it.
func SetupRoles(ctx context.Context, dsn string, r Roles) error {
	if r.Deployment == "" {
		return errors.New("roles: the deployment (CHAT_DB_SCHEMA) is required")
	}
	for login, pw := range r.Passwords {
		if _, ok := LoginRoles[login]; !ok {
			return fmt.Errorf("roles: unknown login role %q (want gateway, fanout, projector or analyst)", login)
		}
		if err := checkPassword(pw); err != nil {
			return fmt.Errorf("roles: %s: %w", r.Name(login), err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(rolesLock)); err != nil {
			return err
		}
		var active, analytics string
		var previous *string
		err := tx.QueryRow(ctx, `SELECT active_schema, analytics_schema, previous_schema FROM `+ControlSchema+`.read_model WHERE name=$1`,
			r.Deployment).Scan(&active, &analytics, &previous)
		if errors.Is(err, pgx.ErrNoRows) || isUndefinedTable(err) {
			return fmt.Errorf("roles: no read models of %s yet: run `chatctl migrate` first", r.Deployment)
		}
		if err != nil {
			return fmt.Errorf("roles: read-model pointer: %w", err)
		}
		owner := r.Owner
		if owner == "" { // whoever ran chatctl migrate
			if err := tx.QueryRow(ctx, `SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
				WHERE n.nspname=$1`, active).Scan(&owner); err != nil {
				return fmt.Errorf("roles: the owner of %s: %w", active, err)
			}
		}
		readModels := []string{active}
		for _, s := range []*string{&r.Deployment, previous} {
			if s != nil && !slices.Contains(readModels, *s) {
				readModels = append(readModels, *s)
			}
		}
		id := func(s string) string { return pgx.Identifier{s}.Sanitize() }
		read, write, anal := id(r.Name(RoleRead)), id(r.Name(RoleWrite)), id(r.Name(RoleAnalytics))
		for _, g := range []string{RoleRead, RoleWrite, RoleAnalytics} {
			if err := ensureRole(ctx, tx, r.Name(g), "NOLOGIN"); err != nil {
				return err
			}
		}
		stmts := []string{
			"GRANT " + read + " TO " + write,
			"GRANT USAGE ON SCHEMA " + id(ControlSchema) + " TO " + read,
			"GRANT SELECT ON " + id(ControlSchema) + ".read_model TO " + read,
			// Gateways note who was online each day (presence is not in the log).
			"GRANT INSERT ON " + id(ControlSchema) + ".presence_days TO " + read,
		}
		for _, s := range readModels {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname=$1)", s).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				continue // a previous schema already dropped
			}
			stmts = append(stmts,
				"GRANT USAGE ON SCHEMA "+id(s)+" TO "+read,
				"GRANT SELECT ON ALL TABLES IN SCHEMA "+id(s)+" TO "+read,
				"GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA "+id(s)+" TO "+write)
		}
		o := id(owner)
		stmts = append(stmts,
			"GRANT USAGE ON SCHEMA "+id(analytics)+" TO "+anal,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+id(analytics)+" TO "+anal,
			"ALTER DEFAULT PRIVILEGES FOR ROLE "+o+" GRANT USAGE ON SCHEMAS TO "+read,
			"ALTER DEFAULT PRIVILEGES FOR ROLE "+o+" GRANT SELECT ON TABLES TO "+read,
			"ALTER DEFAULT PRIVILEGES FOR ROLE "+o+" GRANT INSERT, UPDATE ON TABLES TO "+write,
			"ALTER DEFAULT PRIVILEGES FOR ROLE "+o+" IN SCHEMA "+id(analytics)+" GRANT SELECT ON TABLES TO "+anal,
		)
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("roles: %s: %w", q, err)
			}
		}
		logins := make([]string, 0, len(r.Passwords))
		for l := range r.Passwords {
			logins = append(logins, l)
		}
		slices.Sort(logins)
		for _, l := range logins {
			verifier, err := scramVerifier(r.Passwords[l])
			if err != nil {
				return err
			}
			// The verifier, not the password, goes over the wire and into
			// the server's statement log.
			attrs := "LOGIN NOCREATEDB NOCREATEROLE PASSWORD '" + verifier + "'"
			if err := ensureRole(ctx, tx, r.Name(l), attrs); err != nil {
				return err
			}
			var mighty bool
			if err := tx.QueryRow(ctx, `SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_roles WHERE rolname=$1`,
				r.Name(l)).Scan(&mighty); err != nil {
				return err
			}
			if mighty {
				return fmt.Errorf("roles: %s exists as a superuser, replication or BYPASSRLS role: not a least-privilege login", r.Name(l))
			}
			if _, err := tx.Exec(ctx, "ALTER ROLE "+id(r.Name(l))+" WITH "+attrs); err != nil {
				return fmt.Errorf("roles: set the password of %s: %w", r.Name(l), err)
			}
			if _, err := tx.Exec(ctx, "GRANT "+id(r.Name(LoginRoles[l]))+" TO "+id(r.Name(l))); err != nil {
				return fmt.Errorf("roles: grant %s to %s: %w", r.Name(LoginRoles[l]), r.Name(l), err)
			}
		}
		return nil
	})
}

// ensureRole creates role name with attrs unless it exists.
func ensureRole(ctx context.Context, tx pgx.Tx, name, attrs string) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname=$1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	if _, err := tx.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" "+attrs); err != nil {
		return fmt.Errorf("roles: create %s: %w", name, err)
	}
	return nil
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// checkPassword accepts printable ASCII of 16 to 1000 bytes: long enough
// not to be guessed, and unchanged by SASLprep, which the server applies
// when it checks a password against the verifier computed here.
func checkPassword(pw string) error {
	if len(pw) < 16 || len(pw) > 1000 {
		return fmt.Errorf("the password must be 16 to 1000 bytes (generate one: openssl rand -hex 24)")
	}
	for _, c := range pw {
		if c < 0x21 || c > 0x7e {
			return errors.New("the password must be printable ASCII without spaces")
		}
	}
	return nil
}

// scramVerifier is Postgres's SCRAM-SHA-256 verifier of password (the form
// `\password` and libpq's PQencryptPasswordConn send): the server stores it
// as it is and never sees the password.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return scramVerifierWith(password, salt, 4096)
}

func scramVerifierWith(password string, salt []byte, iter int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}
