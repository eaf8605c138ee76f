// Package service is the application layer every transport calls (native
// WebSocket, Socket.IO, HTTP): the command handlers, the read-model queries
// and the use cases that combine them with a connection's pushes (resume
// with sync) or with live state (presence.query). It works on ports: Reads
// for the read model, Session for a connection's stream, PresenceSources for
// presence; infra/app plugs the adapters in, tests plug in fakes.
// Transports translate frames into these calls (transport/gateway's
// dispatch) and results into frames.
package service

import (
	"context"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Service holds the use cases.
type Service struct {
	Cmd  *commands.Handlers
	Read Reads
	// Presence answers presence.query (nil: unavailable).
	Presence PresenceSources
}

// Reads are the read model's queries, each authorized for user
// (projections.Reader).
type Reads interface {
	Conversations(ctx context.Context, user string, q projections.ConversationsQuery) (projections.ConversationPage, error)
	Search(ctx context.Context, user string, q projections.SearchQuery) (projections.SearchPage, error)
	History(ctx context.Context, user string, q projections.HistoryQuery) ([]domain.Message, bool, error)
	Thread(ctx context.Context, user string, q projections.ThreadQuery) (projections.Thread, error)
	// Positions is the last seq of every conversation of user.
	Positions(ctx context.Context, user string) (map[string]int64, error)
	// CatchUp emits, in seq order, conv's events after seq after, once the
	// read model holds everything the log had when it was called.
	CatchUp(ctx context.Context, user, conv string, after int64, emit func(projections.StoredEvent) error) (int64, error)
}
