package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/parley-chat/parley/domain"
)

// Request is a decoded client frame.
type Request struct {
	ID   int64
	Type string
	Data json.RawMessage
}

// Reply is a server reply.
type Reply struct {
	ID    int64      `json:"id,omitempty"`
	Type  string     `json:"type"`
	Data  any        `json:"data,omitempty"`
	Error *ErrorBody `json:"error,omitempty"`
}

type rawRequest struct {
	ID   json.RawMessage `json:"id"`
	Type json.RawMessage `json:"type"`
	Data json.RawMessage `json:"data"`
}

// DecodeRequest parses one frame. On error it still returns the id when one
// could be read, so the error reply can carry it.
func DecodeRequest(b []byte) (Request, error) {
	if !utf8.Valid(b) {
		// encoding/json would silently replace invalid bytes; refuse instead.
		return Request{}, fmt.Errorf("%w: frame is not valid UTF-8", domain.ErrBadRequest)
	}
	var raw rawRequest
	if err := json.Unmarshal(b, &raw); err != nil {
		return Request{}, fmt.Errorf("%w: frame is not a JSON object: %v", domain.ErrBadRequest, jsonErr(err))
	}
	var r Request
	if len(raw.ID) == 0 || bytes.Equal(raw.ID, []byte("null")) {
		return r, fmt.Errorf("%w: id is required (a positive integer)", domain.ErrBadRequest)
	}
	id, err := strconv.ParseInt(string(raw.ID), 10, 64)
	if err != nil || id < 1 {
		return r, fmt.Errorf("%w: id must be a positive integer", domain.ErrBadRequest)
	}
	r.ID = id
	if len(raw.Type) == 0 {
		return r, fmt.Errorf("%w: type is required", domain.ErrBadRequest)
	}
	if err := json.Unmarshal(raw.Type, &r.Type); err != nil {
		return r, fmt.Errorf("%w: type must be a string", domain.ErrBadRequest)
	}
	r.Data = raw.Data
	if len(r.Data) == 0 || bytes.Equal(r.Data, []byte("null")) {
		r.Data = json.RawMessage("{}")
	}
	return r, nil
}

// DecodeData decodes a request's data into a command, with errors that name
// the field and the expected JSON type.
func DecodeData(data json.RawMessage, into any) error {
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("%w: data must be a JSON object", domain.ErrBadRequest)
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%w: %s", domain.ErrBadRequest, jsonErr(err))
	}
	return nil
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("%s must be %s, got %s", field, jsonType(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int32", "int64", "uint", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a number"
	}
	return kind
}

// ErrorReply builds the error reply of a request.
func ErrorReply(id int64, err error) Reply {
	body, _ := ToError(err)
	return FailureReply(id, body)
}

// FailureReply is the error reply carrying body (see Failure).
func FailureReply(id int64, body ErrorBody) Reply {
	return Reply{ID: id, Type: "error", Error: &body}
}

// OKReply builds an ok reply; nil data becomes {}.
func OKReply(id int64, data any) Reply {
	if data == nil {
		data = struct{}{}
	}
	return Reply{ID: id, Type: "ok", Data: data}
}
