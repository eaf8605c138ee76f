package app

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// QuietSysmon re-executes the process with schedtrace added to GODEBUG,
// at its longest period, unless GODEBUG names schedtrace already (an
// operator's setting, schedtrace=0 included, is kept); it returns only if
// it did not re-execute.
//
// Why: Go's sysmon thread sleeps deeply while every P is idle, and the
// next system call of a woken process wakes it (a futex wake on the hot
// path), after which it polls every 20 µs and takes the P away from
// whichever system call outlasts a poll, handing it to another thread. A
// chatd at 1 000 msg/s goes idle and wakes thousands of times a second,
// so that cost a gateway about 15 % of its CPU on the benchmark machine
// (docs/benchmarks.md, "Session 17"). While schedtrace is set, sysmon
// never sleeps deeply: it backs off to one poll every 10 ms, idle or not.
// What else it does (docs/runbook.md, "Go's sysmon"): a "SCHED" line on
// standard error every 24.8 days (at start too on a host up longer than
// that), and the scheduler's state, a line per thread and goroutine,
// before the message of a fatal error.
func QuietSysmon() {
	env, ok := quietSysmonEnv(os.Environ())
	if !ok {
		return
	}
	// The path it was started by, so that its name stays (a symlink's
	// too); the executable's for a bare name (PATH may name another).
	exe, err := os.Args[0], error(nil)
	if !strings.Contains(exe, "/") {
		exe, err = os.Executable()
	}
	if err == nil {
		err = syscall.Exec(exe, os.Args, env) // returns only on failure
	}
	fmt.Fprintf(os.Stderr, "chatd: running without GODEBUG=%s (re-executing failed: %v)\n", sysmonSetting, err)
}

// sysmonSetting is the GODEBUG setting QuietSysmon adds.
const sysmonSetting = "schedtrace=2147483647"

// quietSysmonEnv is environ with sysmonSetting added to GODEBUG (its first
// entry, the one the runtime reads; later ones dropped); false if GODEBUG
// names schedtrace already.
func quietSysmonEnv(environ []string) ([]string, bool) {
	godebug, found := "", false
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !found {
				godebug, found = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	for _, field := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(field), "schedtrace=") {
			return environ, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+sysmonSetting), true
}
