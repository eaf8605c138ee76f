package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

type everyoneContacts struct{}

func (everyoneContacts) ContactsOf(_ context.Context, users []string, _ int) (map[string][]string, error) {
	out := make(map[string][]string, len(users))
	for _, u := range users {
		out[u] = []string{"friend"}
	}
	return out, nil
}

type countingPublisher struct{ n int }

func (c *countingPublisher) PublishMany(_ context.Context, ds []domain.Delivery) error {
	c.n += len(ds)
	return nil
}

// A sweep's thousands of users are all announced: through the queue,
// which drops what does not fit, most of a dead node's users stayed online
// for their contacts.
func TestAnnounceAllLosesNone(t *testing.T) {
	pub := &countingPublisher{}
	p := NewPresence(nil, nil, everyoneContacts{}, pub, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	gone := map[string]time.Time{}
	for i := range 10_000 {
		gone[fmt.Sprint("u", i)] = time.Now()
	}
	p.AnnounceAll(context.Background(), domain.PresenceOffline, gone)
	if pub.n != len(gone) {
		t.Fatalf("%d of %d announced", pub.n, len(gone))
	}
}
