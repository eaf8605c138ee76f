package gateway

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/commands"
	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/protocol"
)

type handlerFunc func(ctx context.Context, s *service.Service, user string, st *Stream, data json.RawMessage) (any, error)

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

// Handle translates one command frame for user into its use case. st may be
// nil for transports without pushes (HTTP).
func Handle(ctx context.Context, s *service.Service, user string, st *Stream, typ string, data json.RawMessage) (any, error) {
	h, ok := handlers[typ]
	if st != nil && typ != "sync" {
		st.FirstRequest() // the first request ends the initial hold; sync ends it itself
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q", domain.ErrBadRequest, typ)
	}
	return h(ctx, s, user, st, data)
}

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
	return service.SyncCost(len(req.Positions))
}

func decode[T any](data json.RawMessage) (T, error) {
	var v T
	err := protocol.DecodeData(data, &v)
	return v, err
}

func createConversation(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.CreateConversation](data)
	if err != nil {
		return nil, err
	}
	conv, err := s.Cmd.CreateConversation.Handle(ctx, user, c)
	return map[string]any{"conversation": conv}, err
}

func addMember(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.AddMember](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.AddMember.Handle(ctx, user, c)
}

func leave(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.LeaveConversation](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.LeaveConversation.Handle(ctx, user, c)
}

func listConversations(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.ConversationsQuery](data)
	if err != nil {
		return nil, err
	}
	page, err := s.Read.Conversations(ctx, user, q)
	return ConversationPage(page), err
}

func search(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
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

func sendMessage(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.SendMessage](data)
	if err != nil {
		return nil, err
	}
	m, err := s.Cmd.SendMessage.Handle(ctx, user, c)
	return map[string]any{"message": m}, err
}

func editMessage(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.EditMessage](data)
	if err != nil {
		return nil, err
	}
	m, err := s.Cmd.EditMessage.Handle(ctx, user, c)
	return map[string]any{"message": m}, err
}

func deleteMessage(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.DeleteMessage](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.DeleteMessage.Handle(ctx, user, c)
}

func typing(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.Typing](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.Typing.Handle(ctx, user, c)
}

func markRead(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	c, err := decode[commands.MarkRead](data)
	if err != nil {
		return nil, err
	}
	return nil, s.Cmd.MarkRead.Handle(ctx, user, c)
}

func history(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.HistoryQuery](data)
	if err != nil {
		return nil, err
	}
	msgs, more, err := s.Read.History(ctx, user, q)
	return map[string]any{"messages": msgs, "has_more": more}, err
}

// react answers message.react (add) and message.unreact.
func react(add bool) handlerFunc {
	return func(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
		c, err := decode[commands.ReactMessage](data)
		if err != nil {
			return nil, err
		}
		m, err := s.Cmd.React.Handle(ctx, user, c, add)
		return map[string]any{"message": m}, err
	}
}

func thread(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[projections.ThreadQuery](data)
	if err != nil {
		return nil, err
	}
	return s.Read.Thread(ctx, user, q)
}

// syncPositions resumes the connection (service.Sync).
func syncPositions(ctx context.Context, s *service.Service, user string, st *Stream, data json.RawMessage) (any, error) {
	req, err := decode[service.SyncRequest](data)
	if err != nil {
		return nil, err
	}
	var sess service.Session // nil, not a nil *Stream, over HTTP
	if st != nil {
		sess = st
	}
	positions, err := s.Sync(ctx, user, sess, req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"positions": positions}, nil
}

// presenceQuery answers presence.query (service.PresenceOf).
func presenceQuery(ctx context.Context, s *service.Service, user string, _ *Stream, data json.RawMessage) (any, error) {
	q, err := decode[service.PresenceQuery](data)
	if err != nil {
		return nil, err
	}
	out, err := s.PresenceOf(ctx, user, q)
	if err != nil {
		return nil, err
	}
	return map[string]any{"presence": out}, nil
}
