package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/service"
)

// A sync without a stream (a transport without pushes) is a bad request,
// not a nil *Stream passed on as a Session.
func TestSyncWithoutAStream(t *testing.T) {
	_, err := Handle(context.Background(), &service.Service{}, "alice", nil, "sync", json.RawMessage(`{"positions":{"c1":0}}`))
	if !errors.Is(err, domain.ErrBadRequest) {
		t.Fatalf("sync without a stream: %v, want bad_request", err)
	}
}
