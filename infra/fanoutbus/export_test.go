package fanoutbus

import "time"

// SetIdleCheck shortens the quiet-channel ping for a test; the returned
// func restores it.
func SetIdleCheck(d time.Duration) func() {
	old := idleCheck
	idleCheck = d
	return func() { idleCheck = old }
}
