// Package poll is the tests' one way to wait: poll a condition with a
// growing delay until it holds or a deadline passes, instead of sleeping.
// It imports nothing of Parley, so any package's tests can use it.
package poll

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Until polls cond until it holds, or fails t once timeout has passed.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := Err(context.Background(), timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

var errNotYet = errors.New("not yet")

// Err calls cond until it returns nil or limit passes, and returns the last
// error (or the context's, joined): for waits that report rather than fail
// a test, such as the out-of-process harness's. The delay between calls
// grows from 2 ms to 100 ms.
func Err(ctx context.Context, limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	delay := 2 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}
