package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	sjson "github.com/segmentio/encoding/json"

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
	if !shallow(b) {
		return Request{}, errTooDeep
	}
	var raw rawRequest
	if err := sjson.Unmarshal(b, &raw); err != nil {
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
	if err := sjson.Unmarshal(raw.Type, &r.Type); err != nil {
		return r, fmt.Errorf("%w: type must be a string", domain.ErrBadRequest)
	}
	r.Data = raw.Data
	if len(r.Data) == 0 || bytes.Equal(r.Data, []byte("null")) {
		r.Data = json.RawMessage("{}")
	}
	return r, nil
}

// DecodeData decodes a request's data into a command, with errors that name
// the field and the expected JSON type. Client frames are decoded with
// segmentio/encoding/json, as the server's own JSON is (docs/architecture.md,
// "Libraries"): 8x faster than encoding/json on a send's data, which was 7 %
// of a gateway's CPU; its error types are encoding/json's.
func DecodeData(data json.RawMessage, into any) error {
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("%w: data must be a JSON object", domain.ErrBadRequest)
	}
	if !shallow(data) {
		return errTooDeep
	}
	if err := sjson.Unmarshal(data, into); err != nil {
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
		if len(field) > maxField {
			field = strings.ToValidUTF8(field[:maxField], "") + "…"
		}
		return fmt.Sprintf("%s must be %s, got %s", field, jsonType(te.Type.Kind().String()), valueKind(te.Value))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}

// maxDepth bounds the nesting of a client's JSON: no command needs more
// than a few levels, and segmentio's decoder has no depth limit of its own
// (a 60 KB frame of nested arrays cost it 12-15 ms where encoding/json
// stops at 10 000 levels).
const maxDepth = 32

var errTooDeep = fmt.Errorf("%w: JSON nested deeper than %d levels", domain.ErrBadRequest, maxDepth)

// shallow reports whether b's arrays and objects nest at most maxDepth
// deep; brackets inside strings do not count.
func shallow(b []byte) bool {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}

// valueKind names the JSON value a type error met as encoding/json does
// ("object", "array", "string", "bool", "null", "number"). segmentio's
// errors carry instead the quoted rest of the input from that value on,
// which must not be echoed back to the client.
func valueKind(v string) string {
	if raw, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
		v = raw
	} else if v != "" && v[0] >= 'a' && v[0] <= 'z' && !strings.ContainsAny(v, "{[\"") {
		return strings.Fields(v)[0] // encoding/json's word
	}
	v = strings.TrimLeft(v, " \t\r\n")
	if v == "" {
		return "value"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// maxField bounds the field path an error names: a map's keys are the
// client's, and a path through them can be as long as the frame.
const maxField = 64

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
