package fanoutbus

import (
	"context"
	"time"
)

// SetIdleCheck shortens the quiet-channel ping for a test; the returned
// func restores it.
func SetIdleCheck(d time.Duration) func() {
	old := idleCheck
	idleCheck = d
	return func() { idleCheck = old }
}

// RoutesKey is the hash holding user's route, for tests that change a
// route behind a cache's back.
func (b *Bus) RoutesKey(user string) string { return b.routesKey(user) }

// SetAfterRead runs f between a RouteCache lookup's read and its keep;
// the returned func restores the hook.
func SetAfterRead(f func()) func() {
	old := afterRead
	afterRead = f
	return func() { afterRead = old }
}

// Held is how many batches p holds for their replies.
func (p *LatePublisher) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.unsettled)
}

// MaxHeldReplies is maxHeldReplies.
const MaxHeldReplies = maxHeldReplies

// DropDead is what a fan-out does on finding nodes dead.
func (b *Bus) DropDead(ctx context.Context, out map[string][]string, dead map[string]bool) {
	b.dropDead(ctx, out, dead)
}
