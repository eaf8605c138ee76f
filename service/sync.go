package service

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/projections"
)

// Sync bounds: one sync names at most MaxSyncPositions conversations, and
// costs the connection's rate limiter one command per SyncPositionsPerCommand
// of them beyond the first (each is a membership check and a read-model
// query): a client cannot make the node scan thousands of conversations
// for the price of one frame.
const (
	MaxSyncPositions        = 1000
	SyncPositionsPerCommand = 50
)

// SyncRequest is the data of sync: the client's last seq per conversation.
// More says another sync follows with the rest of the client's positions
// (one names at most MaxSyncPositions): a new connection's pushes stay
// held until the last part, so none of a conversation named later
// overtakes the events its part replays.
type SyncRequest struct {
	Positions map[string]int64 `json:"positions"`
	More      bool             `json:"more"`
}

// SyncCost is what a sync naming n conversations costs the connection's
// rate limiter.
func SyncCost(n int) int { return 1 + n/SyncPositionsPerCommand }

// Sync replays, for each listed conversation, every event after the
// client's position, in order and once, then lets live pushes through, and
// returns the last seq of every conversation of user. Live pushes of a
// conversation are held from before the read-model query until after the
// replay, so none falls between the two.
func (s *Service) Sync(ctx context.Context, user string, st Session, req SyncRequest) (map[string]int64, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: sync needs a connection that receives pushes", domain.ErrBadRequest)
	}
	convs, err := req.conversations()
	if err != nil {
		return nil, err
	}
	// Held from before the replays begin: the hold's timer must not let a
	// named conversation's push through between here and its Replay.
	next := st.HoldOn()
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
	if req.More {
		defer next()
	} else {
		st.Release()
	}
	for _, conv := range convs {
		err := s.catchUp(ctx, user, st, conv, req.Positions[conv])
		if err != nil && !errors.Is(err, domain.ErrForbidden) && !errors.Is(err, domain.ErrNotFound) {
			return nil, err
		}
		if err != nil {
			st.Refused(conv) // never a member: nothing to replay, and absent from positions
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
	return positions, nil
}

// conversations validates the request and returns its conversations in
// order, so concurrent syncs hold them in the same order.
func (r SyncRequest) conversations() ([]string, error) {
	if len(r.Positions) > MaxSyncPositions {
		return nil, fmt.Errorf("%w: positions: at most %d conversations per sync (split it)", domain.ErrBadRequest, MaxSyncPositions)
	}
	convs := make([]string, 0, len(r.Positions))
	for conv, pos := range r.Positions {
		if err := domain.ValidateID("positions key", conv); err != nil {
			return nil, err
		}
		if err := domain.ValidateSeq("positions["+conv+"]", pos); err != nil {
			return nil, err
		}
		convs = append(convs, conv)
	}
	sort.Strings(convs)
	return convs, nil
}

func (s *Service) catchUp(ctx context.Context, user string, st Session, conv string, pos int64) error {
	// out: user left conv at an event already replayed and was not added
	// back since. The events in between are not its to see, though its
	// membership was checked when the replay began: a leave from another
	// device during a long replay, or a leave and a return both after pos.
	out := false
	emit := func(e projections.StoredEvent) error {
		switch ownChange(e.Event, user) {
		case domain.EvMemberJoined:
			out = false
		case domain.EvMemberLeft:
			if out {
				return nil
			}
			out = true // its own leave is the last event it gets
		default:
			if out {
				return nil
			}
		}
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
		// some did not fit its paused buffer (Session.CaughtUp): the read
		// model has them, replay on.
		from = st.Last(conv)
	}
}

// ownChange is the type of e if e is user's own join or leave, else "".
func ownChange(e domain.Event, user string) string {
	if e.Type != domain.EvMemberJoined && e.Type != domain.EvMemberLeft {
		return ""
	}
	var p domain.MemberChanged
	if e.Payload(&p) != nil || p.UserID != user {
		return ""
	}
	return e.Type
}
