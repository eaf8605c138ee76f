package protocol

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		in, wantErr string
		id          int64
	}{
		{`{"id":7,"type":"message.send","data":{"a":1}}`, "", 7},
		{`{"id":7,"type":"conversation.list"}`, "", 7},
		{`{"type":"x"}`, "id is required", 0},
		{`{"id":null,"type":"x"}`, "id is required", 0},
		{`{"id":0,"type":"x"}`, "positive integer", 0},
		{`{"id":-3,"type":"x"}`, "positive integer", 0},
		{`{"id":1.5,"type":"x"}`, "positive integer", 0},
		{`{"id":"7","type":"x"}`, "positive integer", 0},
		{`{"id":7}`, "type is required", 7},
		{`{"id":7,"type":5}`, "type must be a string", 7},
		{`not json`, "not a JSON object", 0},
		{`[1,2]`, "not a JSON object", 0},
	} {
		r, err := DecodeRequest([]byte(tc.in))
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.in, err)
			}
		} else if err == nil || !errors.Is(err, domain.ErrBadRequest) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want bad request containing %q", tc.in, err, tc.wantErr)
		}
		if r.ID != tc.id {
			t.Errorf("%s: id %d, want %d", tc.in, r.ID, tc.id)
		}
	}
}

func TestDecodeDataNamesTheField(t *testing.T) {
	var v struct {
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
	}
	err := DecodeData([]byte(`{"conversation_id": 5}`), &v)
	if err == nil || !strings.Contains(err.Error(), "conversation_id must be a string") {
		t.Fatalf("got %v", err)
	}
	err = DecodeData([]byte(`{"seq": "x"}`), &v)
	if err == nil || !strings.Contains(err.Error(), "seq must be a number") {
		t.Fatalf("got %v", err)
	}
	if err := DecodeData([]byte(`[]`), &v); err == nil || !strings.Contains(err.Error(), "data must be a JSON object") {
		t.Fatalf("got %v", err)
	}
}

func TestToErrorMapsEveryCode(t *testing.T) {
	for sentinel, code := range map[error]string{
		domain.ErrBadRequest: CodeBadRequest, domain.ErrUnauthorized: CodeUnauthorized, domain.ErrForbidden: CodeForbidden,
		domain.ErrNotFound: CodeNotFound, domain.ErrTooLarge: CodeTooLarge, domain.ErrRateLimited: CodeRateLimited,
		domain.ErrConflict: CodeConflict, domain.ErrUnavailable: CodeUnavailable,
	} {
		body, _ := ToError(errors.Join(errors.New("ctx"), sentinel))
		if body.Code != code {
			t.Errorf("%v -> %s, want %s", sentinel, body.Code, code)
		}
	}
	body, status := ToError(errors.New("secret internals"))
	if body.Code != CodeInternal || status != 500 || strings.Contains(body.Message, "secret") {
		t.Fatalf("internal error leaked: %+v", body)
	}
}

// Driver text (hosts, databases) of an unavailable or internal error never
// reaches a client: it gets a fixed message and a request id to quote.
func TestFailureHidesInternalText(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("%w: history: dial tcp 10.1.2.3:5432 (db chat_prod): connection refused", domain.ErrUnavailable),
		fmt.Errorf("wait: %w", context.DeadlineExceeded),
		errors.New("pgx: relation t_prod.messages is missing"),
	} {
		body, status, logIt := Failure(err)
		if !logIt || body.RequestID == "" || status < 500 ||
			body.Message != MessageUnavailable && body.Message != MessageInternal {
			t.Errorf("%v: %+v (status %d, log %v)", err, body, status, logIt)
		}
	}
	body, _, logIt := Failure(fmt.Errorf("%w: body must not contain U+0000", domain.ErrBadRequest))
	if logIt || body.RequestID != "" || body.Message != "body must not contain U+0000" {
		t.Errorf("a client error is the client's to read: %+v (log %v)", body, logIt)
	}
	// An unavailable error the server explains (a search too broad to
	// finish) shows its text: the client should change the request, not
	// retry it as is. It still gets a request id.
	body, _, logIt = Failure(domain.Explained{Err: fmt.Errorf("%w: search: stopped after 5s; use rarer words", domain.ErrUnavailable)})
	if body.Code != CodeUnavailable || body.Message != "search: stopped after 5s; use rarer words" || body.RequestID == "" || !logIt {
		t.Errorf("an explained unavailable error: %+v (log %v)", body, logIt)
	}
	a, _, _ := Failure(domain.ErrUnavailable)
	b, _, _ := Failure(domain.ErrUnavailable)
	if a.RequestID == b.RequestID {
		t.Errorf("two failures share request id %s", a.RequestID)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"id":1,"type":"message.send","data":{"conversation_id":"c","client_msg_id":"x","body":"hi"}}`,
		`{"id":2,"type":"sync","data":{"positions":{"c":3}}}`, `{"id":9223372036854775807,"type":"x"}`, `{}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, domain.ErrBadRequest) {
				t.Fatalf("error not bad_request: %v", err)
			}
			return
		}
		if r.ID < 1 {
			t.Fatalf("accepted id %d", r.ID)
		}
		var anyData map[string]any
		_ = DecodeData(r.Data, &anyData)
	})
}
