package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/metrics"
	"github.com/parley-chat/parley/service"
	"github.com/parley-chat/parley/transport/protocol"
)

// Pipeline runs every command of every transport (WebSocket, Socket.IO,
// HTTP) the same way: rate limit, deadline, handler, metrics, and errors
// mapped to protocol codes with fixed client messages for unavailable and
// internal ones, logged under the request id the client gets. Transports
// only translate frames into Calls and Results into frames.
type Pipeline struct {
	Service *service.Service
	Log     *slog.Logger
	Timeout time.Duration // a command's deadline (sync: SyncTimeout); 0: 15 s
}

// Call is one command as a transport received it.
type Call struct {
	Protocol string // "ws", "socketio", "http": for logs
	User     string // authenticated by the transport
	Stream   *Stream
	Type     string
	Data     json.RawMessage
	// Limit charges the command's cost (CommandCost) to the connection's or
	// user's rate limiter: nil when it may run, else the error to answer.
	Limit func(cost int) error
	Attrs []any // more log attributes (conn_id, path)
}

// Result is a command's answer: Data on success, else Err and its HTTP
// status.
type Result struct {
	Data   any
	Err    *protocol.ErrorBody
	Status int
}

// Run runs c. A command that started runs to its end even if the client
// hangs up (ctx's cancellation is not passed on): what the log acked is
// always recorded where it must be.
func (p *Pipeline) Run(ctx context.Context, c Call) Result {
	if c.Limit != nil {
		if err := c.Limit(CommandCost(c.Type, c.Data)); err != nil {
			metrics.RateLimited.Inc()
			return p.Fail(c, err)
		}
	}
	start := time.Now()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CommandTimeout(c.Type, timeout))
	data, err := Handle(ctx, p.Service, c.User, c.Stream, c.Type, c.Data)
	cancel()
	if err != nil {
		return p.Fail(c, err)
	}
	typ := metricType(c.Type)
	metrics.Commands.WithLabelValues(typ, "ok").Inc()
	metrics.CommandLatency.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	if data == nil {
		data = struct{}{}
	}
	return Result{Data: data, Status: http.StatusOK}
}

// Fail answers c with err, counting and (for unavailable and internal
// errors) logging it: also for refusals before a command runs.
func (p *Pipeline) Fail(c Call, err error) Result {
	body, status, logIt := protocol.Failure(err)
	if logIt {
		LogFailure(p.Log, body, err, append([]any{"protocol", c.Protocol, "type", c.Type, "user_id", c.User,
			"conversation_id", conversationOf(c.Data)}, c.Attrs...)...)
	}
	metrics.Commands.WithLabelValues(metricType(c.Type), body.Code).Inc()
	return Result{Err: &body, Status: status}
}

// ErrRateLimited answers a command over its user's rate limit.
var ErrRateLimited = fmt.Errorf("%w: too many commands, slow down", domain.ErrRateLimited)

// metricType bounds the label to known command types.
func metricType(t string) string {
	if Known(t) {
		return t
	}
	return "unknown"
}

// conversationOf is the conversation a command's data names, for logs.
func conversationOf(data []byte) string {
	var d struct {
		ConversationID string `json:"conversation_id"`
	}
	_ = json.Unmarshal(data, &d)
	return d.ConversationID
}
