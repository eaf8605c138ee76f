package service

import "context"

// Session is one connection's stream of pushes, as a resume drives it
// (gateway.Stream): live pushes of a conversation are held while the read
// model replays what the client missed, then let through once, in order.
type Session interface {
	// Release ends the hold every stream starts with (the client's first
	// request, or its sync, decides what it wants first).
	Release()
	// HoldOn keeps that hold on while a sync runs, from before its
	// replays; next, for a sync with more parts to come, gives the client
	// a moment from then to send the next part.
	HoldOn() (next func())
	// Replay holds conv's live pushes for a replay from seq from and
	// returns the seq to replay after.
	Replay(conv string, from int64) int64
	// CaughtUp ends conv's replay and lets its held pushes through, unless
	// some were dropped meanwhile: then it returns false and the replay goes
	// on from Last(conv).
	CaughtUp(conv string) bool
	// Abandon ends conv's replay without catching up: conv stays held until
	// a sync succeeds.
	Abandon(conv string)
	// Resume lets conv's held pushes through.
	Resume(conv string) int64
	// Refused ends the replay of a conversation that is not the user's: its
	// held pushes go through, and a stream given nothing of it forgets it.
	Refused(conv string)
	// Emit passes one replayed event through, once.
	Emit(conv string, seq int64, frame []byte)
	// WaitRoom blocks until the connection can take more frames.
	WaitRoom(ctx context.Context) error
	// Last is the last seq of conv the client was given.
	Last(conv string) int64
}
