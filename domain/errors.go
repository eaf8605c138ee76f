// Package domain holds Parley's entities, events and rules. It imports
// nothing from infrastructure.
package domain

import "errors"

// Sentinel errors. transport/protocol maps each to one protocol code; wrap
// them with %w and a message that names the field and the rule.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrTooLarge     = errors.New("too large")
	ErrRateLimited  = errors.New("rate limited")
	ErrConflict     = errors.New("conflict")
	ErrUnavailable  = errors.New("unavailable")
)

// Explained is an unavailable error whose text is for the client: it names
// nothing internal and says what to do instead of retrying as is (a search
// too broad to finish). Other unavailable errors show a fixed message
// (transport/protocol).
type Explained struct{ Err error }

func (e Explained) Error() string { return e.Err.Error() }

func (e Explained) Unwrap() error { return e.Err }
