package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// ErrUnavailable marks a part this machine cannot run (no server binaries,
// no OS user): a test may skip on it rather than fail.
var ErrUnavailable = errors.New("not available on this machine")

// PG is a private Postgres cluster on a random port, run as the postgres OS
// user, so that a test can stop and start it without touching the shared
// one. Its data lives under dir, which the postgres user must be able to
// reach (the caller makes dir world-traversable).
type PG struct {
	Proc
	Port int
	bin  string
	dir  string
}

// NewPG runs initdb into dir/pg; the server logs to dir/logs/postgres.log.
func NewPG(ctx context.Context, dir string) (*PG, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, fmt.Errorf("no PostgreSQL server binaries under /usr/lib/postgresql: %w", ErrUnavailable)
	}
	sort.Strings(bins)
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("no postgres OS user (%v): %w", err, ErrUnavailable)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	p := &PG{bin: filepath.Dir(bins[len(bins)-1]), dir: filepath.Join(dir, "pg")}
	if err := mkdirs(p.dir, filepath.Join(dir, "logs")); err != nil {
		return nil, err
	}
	if err := os.Chmod(p.dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(p.dir, uid, gid); err != nil {
		return nil, fmt.Errorf("hand %s to postgres: %w", p.dir, err)
	}
	if p.Port, err = testenv.PickPort(); err != nil {
		return nil, err
	}
	init := exec.CommandContext(ctx, "runuser", "-u", "postgres", "--", filepath.Join(p.bin, "initdb"), "-D", p.data(),
		"-U", "root", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N")
	init.Dir = "/"
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	p.Name, p.Log, p.Mk = "postgres", filepath.Join(dir, "logs", "postgres.log"), func() *exec.Cmd { return p.command(uid, gid) }
	return p, nil
}

func (p *PG) command(uid, gid int) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data(),
		"-c", "port="+strconv.Itoa(p.Port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+p.dir, "-c", "max_connections=300",
		"-c", "shared_buffers=64MB", "-c", "fsync=off", "-c", "log_min_messages=warning")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return cmd
}

func (p *PG) data() string { return filepath.Join(p.dir, "data") }

// URL is the connection string of database db.
func (p *PG) URL(db string) string {
	return fmt.Sprintf("postgres://root@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// WaitReady waits until the server accepts connections.
func (p *PG) WaitReady(ctx context.Context, limit time.Duration) error {
	return poll.Err(ctx, limit, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		return c.Close(cctx)
	})
}

// CreateDB creates database db.
func (p *PG) CreateDB(ctx context.Context, db string) error {
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.Name, err)
	}
	defer c.Close(ctx)
	if _, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" TEMPLATE template0 LC_COLLATE 'C'"); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// StopMode stops the server as `pg_ctl stop -m mode` does, with the signal
// the postmaster reads as that mode: smart (SIGTERM) waits for clients,
// fast (SIGINT) aborts their transactions and shuts down cleanly,
// immediate (SIGQUIT) is a crash that recovers from WAL at the next start.
func (p *PG) StopMode(mode string) {
	sig := map[string]syscall.Signal{"smart": syscall.SIGTERM, "fast": syscall.SIGINT, "immediate": syscall.SIGQUIT}[mode]
	if sig == 0 {
		sig = syscall.SIGINT
	}
	p.Stop(sig, 60*time.Second)
}

// Restart starts the server again and waits until it accepts connections.
func (p *PG) Restart(ctx context.Context) error {
	if err := p.Start(); err != nil {
		return err
	}
	if err := p.WaitReady(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("%s: %w (log %s)", p.Name, err, p.Log)
	}
	return nil
}

// StartPG is a ready private Postgres with database db for one test: it
// skips the test where the machine cannot run one, and stops it and
// removes its files at cleanup.
func StartPG(t testing.TB, db string) *PG {
	t.Helper()
	dir, err := os.MkdirTemp("", "parley-pg-")
	if err != nil {
		t.Fatal(err)
	}
	// The postgres OS user must reach its data dir under it.
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ctx := context.Background()
	p, err := NewPG(ctx, dir)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.StopMode("immediate") })
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}
