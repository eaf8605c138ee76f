package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/transport/protocol"
)

// Service maps protocol commands onto the use cases. Every transport (native
// WebSocket, Socket.IO, HTTP) calls it, so they behave the same.
type Service struct {
	Cmd  *commands.Handlers
	Read projections.Reader
	// Presence answers presence.query (nil: unavailable).
	Presence PresenceSources
}

type handlerFunc func(ctx context.Context, s *Service, user string, st *Stream, data json.RawMessage) (any, error)

var handlers = map[string]handlerFunc{
	"conversation.create":     createConversation,
	"conversation.add_member": addMember,
	"conversation.leave":      leave,
	"conversation.list":       listConversations,
	"search":                  search,
	"message.send":            sendMessage,
	"message.edit":            editMessage,
	"message.delete":          deleteMessage,
	"typing":                  typing,
	"read":                    markRead,
	"sync":                    syncPositions,
	"history":                 history,
	"presence.query":          presenceQuery,
	"thread":                  thread,
	"message.react":           react(true),
	"message.unreact":         react(false),
}

// Known reports whether typ is a command.
func Known(typ string) bool { _, ok := handlers[typ]; return ok }

// Handle runs one command for user. st may be nil for transports without
// pushes (HTTP).
func (s *Service) Handle(ctx context.Context, user string, st *Stream, typ string, data json.RawMessage) (any, error) {
	h, ok := handlers[typ]
	if st != nil && typ != "sync" {
		st.Release() // the first request ends the initial hold; sync ends it itself
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q", domain.ErrBadRequest, typ)
	}
	return h(ctx, s, user, st, data)
}

// Sync bounds: one sync names at most MaxSyncPositions conversations, and
// costs the connection's rate limiter one command per SyncPositionsPerCommand
// of them beyond the first (each is a membership check and a read-model
// query): a client cannot make the node scan thousands of conversations
// for the price of one frame.
const (
	MaxSyncPositions        = 1000
	SyncPositionsPerCommand = 50
)

// CommandCost is what a command costs the connection's rate limiter.
func CommandCost(typ string, data json.RawMessage) int {
	if typ != "sync" {
		return 1
	}
	var req struct {
		Positions map[string]json.RawMessage `json:"positions"`
	}
	if json.Unmarshal(data, &req) != nil {
		return 1 // refused as bad_request by the handler
	}
	return 1 + len(req.Positions)/SyncPositionsPerCommand
}

func decode[T any](data json.RawMessage) (T, error) {
	var v T
	err := protocol.DecodeData(data, &v)
	return v, err
}

func createConversation(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.CreateConversation](data)
	if err != nil {
		return nil, err
	}
	conv, err := s.Cmd.CreateConversation.Handle(ctx, user, c)
	return map[string]any{"conversation": conv}, err
}

func addMember(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.AddMember](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.AddMember.Handle(ctx, user, c)
}

func leave(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.LeaveConversation](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.LeaveConversation.Handle(ctx, user, c)
}

func listConversations(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.ConversationsQuery](data)
	if err != nil {
		return nil, err
	}
	page, err := s.Read.Conversations(ctx, user, q)
	return ConversationPage(page), err
}

func search(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.SearchQuery](data)
	if err != nil {
		return nil, err
	}
	page, err := s.Read.Search(ctx, user, q)
	out := map[string]any{"messages": page.Messages, "has_more": page.HasMore}
	if page.Next != "" {
		out["next_cursor"] = page.Next
	}
	return out, err
}

// ConversationPage is the reply to conversation.list (and its HTTP twin).
func ConversationPage(p projections.ConversationPage) map[string]any {
	out := map[string]any{"conversations": p.Conversations, "has_more": p.HasMore}
	if p.Next != "" {
		out["next_cursor"] = p.Next
	}
	return out
}

func sendMessage(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.SendMessage](data)
	if err != nil {
		return nil, err
	}
	m, err := s.Cmd.SendMessage.Handle(ctx, user, c)
	return map[string]any{"message": m}, err
}

func editMessage(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.EditMessage](data)
	if err != nil {
		return nil, err
	}
	m, err := s.Cmd.EditMessage.Handle(ctx, user, c)
	return map[string]any{"message": m}, err
}

func deleteMessage(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.DeleteMessage](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.DeleteMessage.Handle(ctx, user, c)
}

func typing(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.Typing](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.Typing.Handle(ctx, user, c)
}

func markRead(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.MarkRead](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.MarkRead.Handle(ctx, user, c)
}

func history(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.HistoryQuery](data)
	if err != nil {
		return nil, err
	}
	msgs, more, err := s.Read.History(ctx, user, q)
	return map[string]any{"messages": msgs, "has_more": more}, err
}

// react answers message.react (add) and message.unreact.
func react(add bool) handlerFunc {
	return func(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
		c, err := decode[commands.ReactMessage](data)
		if err != nil {
			return nil, err
		}
		m, err := s.Cmd.React.Handle(ctx, user, c, add)
		return map[string]any{"message": m}, err
	}
}

func thread(ctx context.Context, s *Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.ThreadQuery](data)
	if err != nil {
		return nil, err
	}
	return s.Read.Thread(ctx, user, q)
}

// SyncRequest is the data of sync.
type SyncRequest struct {
	Positions map[string]int64 `json:"positions"`
}

// syncPositions replays, for each listed conversation, every event after the
// client's position, in order and once, then lets live pushes through. Live
// pushes of the conversation are held from before the read-model query until
// after the replay, so none falls between the two.
func syncPositions(ctx context.Context, s *Service, user string, st *Stream, data json.RawMessage) (any, error) {
	req, err := decode[SyncRequest](data)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: sync needs a connection that receives pushes", domain.ErrBadRequest)
	}
	if len(req.Positions) > MaxSyncPositions {
		return nil, fmt.Errorf("%w: positions: at most %d conversations per sync (split it)", domain.ErrBadRequest, MaxSyncPositions)
	}
	convs := make([]string, 0, len(req.Positions))
	for conv, pos := range req.Positions {
		if err := domain.ValidateID("positions key", conv); err != nil {
			return nil, err
		}
		if err := domain.ValidateSeq("positions["+conv+"]", pos); err != nil {
			return nil, err
		}
		convs = append(convs, conv)
	}
	sort.Strings(convs)
	for _, conv := range convs {
		st.Replay(conv, req.Positions[conv])
	}
	// Each conversation lets its live pushes through once caught up. After
	// a failed catch-up the rest stay paused until a sync succeeds: a live
	// push released now would move the client's position past the events
	// this sync did not replay, and its next sync would skip them.
	caughtUp := 0
	defer func() {
		for _, conv := range convs[caughtUp:] {
			st.Abandon(conv)
		}
	}()
	st.Release()
	for _, conv := range convs {
		err := catchUp(ctx, s, user, st, conv, req.Positions[conv])
		if err != nil && !errors.Is(err, domain.ErrForbidden) && !errors.Is(err, domain.ErrNotFound) {
			return nil, err
		}
		if err != nil {
			st.Resume(conv) // a non-member has nothing to replay, and is absent from positions
		}
		caughtUp++
	}
	positions, err := s.Read.Positions(ctx, user)
	if err != nil {
		return nil, err
	}
	for conv, seq := range positions {
		positions[conv] = max(seq, st.Last(conv))
	}
	return map[string]any{"positions": positions}, nil
}

func catchUp(ctx context.Context, s *Service, user string, st *Stream, conv string, pos int64) error {
	emit := func(e projections.StoredEvent) error {
		frame, err := domain.EncodePush(e.Event, e.Seq)
		if err != nil {
			return nil // an event of a newer version: skip, as live fan-out does
		}
		// Flow control: a long resume goes at the client's pace instead of
		// overflowing its send queue (a client that stops reading is still
		// cut off by the write deadline).
		if err := st.WaitRoom(ctx); err != nil {
			return fmt.Errorf("%w: sync: the connection did not take more events: %v", domain.ErrUnavailable, err)
		}
		st.Emit(conv, e.Seq, frame)
		return nil
	}
	from := st.Replay(conv, pos)
	for {
		_, err := s.Read.CatchUp(ctx, user, conv, from, emit)
		if err != nil || st.CaughtUp(conv) {
			return err
		}
		// Live pushes of conv came faster than the replay reached them and
		// some did not fit its paused buffer (Stream.Replay): the read model
		// has them, replay on.
		from = st.Last(conv)
	}
}
