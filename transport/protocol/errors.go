// Package protocol holds the wire shapes of the native protocol and the one
// place where errors become protocol codes and HTTP statuses.
package protocol

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/parley-chat/parley/domain"
)

// Error codes of PROTOCOL.md.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeTooLarge     = "too_large"
	CodeRateLimited  = "rate_limited"
	CodeConflict     = "conflict"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

var codes = []struct {
	err    error
	code   string
	status int
}{
	{domain.ErrBadRequest, CodeBadRequest, http.StatusBadRequest},
	{domain.ErrUnauthorized, CodeUnauthorized, http.StatusUnauthorized},
	{domain.ErrForbidden, CodeForbidden, http.StatusForbidden},
	{domain.ErrNotFound, CodeNotFound, http.StatusNotFound},
	{domain.ErrTooLarge, CodeTooLarge, http.StatusRequestEntityTooLarge},
	{domain.ErrRateLimited, CodeRateLimited, http.StatusTooManyRequests},
	{domain.ErrConflict, CodeConflict, http.StatusConflict},
	{domain.ErrUnavailable, CodeUnavailable, http.StatusServiceUnavailable},
	{context.DeadlineExceeded, CodeUnavailable, http.StatusServiceUnavailable},
}

// ErrorBody is the error object of replies and HTTP errors. RequestID names
// the log line that holds the full error of an unavailable or internal one.
type ErrorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// The fixed messages of the codes whose error text is internal (driver
// errors name hosts, databases, addresses): clients get these, the log
// gets the text.
const (
	MessageUnavailable = "temporarily unavailable: retry"
	MessageInternal    = "internal error"
)

// ToError maps any error to its protocol code and a message safe to show:
// unavailable and internal errors do not leak their text, except an
// unavailable error the server explains to the client (domain.Explained).
func ToError(err error) (ErrorBody, int) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			if c.code == CodeUnavailable {
				if ex := (domain.Explained{}); errors.As(err, &ex) {
					return ErrorBody{Code: c.code, Message: message(ex.Err, c.err)}, c.status
				}
				return ErrorBody{Code: c.code, Message: MessageUnavailable}, c.status
			}
			return ErrorBody{Code: c.code, Message: message(err, c.err)}, c.status
		}
	}
	return ErrorBody{Code: CodeInternal, Message: MessageInternal}, http.StatusInternalServerError
}

// Failure is how a failed request reaches the client: ToError, and for an
// unavailable or internal error a fresh request id in the body; logIt then
// says the caller must log err with that id (the log is the only place its
// text goes).
func Failure(err error) (body ErrorBody, status int, logIt bool) {
	body, status = ToError(err)
	if body.Code == CodeUnavailable || body.Code == CodeInternal {
		body.RequestID = domain.NewID("req_")
		return body, status, true
	}
	return body, status, false
}

// message strips the sentinel's own text from the front ("bad request: x"
// becomes "x").
func message(err, sentinel error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, sentinel.Error()+": "); ok {
		return rest
	}
	return s
}
