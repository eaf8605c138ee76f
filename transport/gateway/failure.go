package gateway

import (
	"context"
	"log/slog"

	"github.com/parley-chat/parley/transport/protocol"
)

// LogFailure logs a failed command whose text the client did not get
// (protocol.Failure said to), under the request id the client got, so that
// a user's report ("request_id req_...") finds the cause. Every transport
// (WebSocket, Socket.IO, HTTP) logs failures through it.
func LogFailure(log *slog.Logger, body protocol.ErrorBody, err error, attrs ...any) {
	level := slog.LevelWarn
	if body.Code == protocol.CodeInternal {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "command failed",
		append([]any{"code", body.Code, "request_id", body.RequestID, "err", err}, attrs...)...)
}
