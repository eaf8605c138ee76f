package app

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// childArg makes this test binary the child of TestQuietSysmonReexecutes
// (an argument, which no environment can pass by accident): QuietSysmon,
// then its GODEBUG, before any test runs.
const childArg = "-parley-sysmon-child"

func init() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		QuietSysmon()
		os.Stdout.WriteString(os.Getenv("GODEBUG"))
		os.Exit(0)
	}
}

// A process started without schedtrace in GODEBUG runs again with it,
// other settings kept; one whose GODEBUG names it (an operator's choice,
// schedtrace=0 too) runs as started.
func TestQuietSysmonReexecutes(t *testing.T) {
	for _, c := range []struct{ godebug, want string }{
		{"", sysmonSetting},
		{"madvdontneed=1", "madvdontneed=1," + sysmonSetting},
		{"schedtrace=0", "schedtrace=0"},
		{"gctrace=0,schedtrace=1000", "gctrace=0,schedtrace=1000"},
	} {
		cmd := exec.Command(os.Args[0], childArg)
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
		if c.godebug != "" {
			cmd.Env = append(cmd.Env, "GODEBUG="+c.godebug)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GODEBUG=%q: %v", c.godebug, err)
		}
		if string(out) != c.want {
			t.Fatalf("GODEBUG=%q: the process ran with GODEBUG=%q, want %q", c.godebug, out, c.want)
		}
	}
}

// Only the GODEBUG entry changes, the first of several (the runtime's);
// the rest of the environment is kept.
func TestQuietSysmonEnvKeepsTheRest(t *testing.T) {
	env, ok := quietSysmonEnv([]string{"A=1", "GODEBUG=x=1", "B=2", "GODEBUG=y=2"})
	if !ok || !slices.Equal(env, []string{"A=1", "B=2", "GODEBUG=x=1," + sysmonSetting}) {
		t.Fatalf("got %v %v", env, ok)
	}
	if _, ok := quietSysmonEnv([]string{"GODEBUG=schedtrace=0", "GODEBUG=x=1"}); ok {
		t.Fatal("an opt-out in the first GODEBUG entry was not kept")
	}
}
