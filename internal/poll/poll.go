// Package poll is the tests' one way to wait: poll a condition with a
// growing delay until it holds or a deadline passes, instead of sleeping.
// It imports nothing of Parley, so any package's tests can use it.
package poll

import (
	"testing"
	"time"
)

// Until polls cond until it holds, or fails t once timeout has passed.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 2 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}
