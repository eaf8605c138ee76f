package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/domain"
)

// A body with bytes that are not UTF-8 is refused, as a frame is: decoded,
// they would all become U+FFFD, and two different client_msg_ids one.
func TestBodyNotUTF8IsRefused(t *testing.T) {
	var into struct {
		ClientMsgID string `json:"client_msg_id"`
	}
	r := httptest.NewRequest("POST", "/api/v1/conversations/c/messages", strings.NewReader("{\"client_msg_id\":\"\xff\",\"body\":\"a\"}"))
	if err := readJSON(r, &into); !errors.Is(err, domain.ErrBadRequest) {
		t.Fatalf("a body with \\xff: %v (client_msg_id %q), want bad_request", err, into.ClientMsgID)
	}
	r = httptest.NewRequest("POST", "/api/v1/conversations/c/messages", strings.NewReader(`{"client_msg_id":"é","body":"a"}`))
	if err := readJSON(r, &into); err != nil || into.ClientMsgID != "é" {
		t.Fatalf("a UTF-8 body: %v, %q", err, into.ClientMsgID)
	}
}

// A path or method no route serves under /api/ answers with the
// protocol's JSON error, not text/plain.
func TestUnknownAPIEndpointIsJSON(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs := httptest.NewServer(New(Config{}, nil, nil, quiet))
	defer hs.Close()
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/nothing"}, {"DELETE", "/api/v1/conversations"}, {"GET", "/api/v1/conversations/"}, {"PUT", "/api/"},
	} {
		req, _ := http.NewRequest(c.method, hs.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || err != nil || body.Error.Code != "not_found" ||
			res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s %+v (%v), want a JSON not_found", c.method, c.path, res.StatusCode, res.Header.Get("Content-Type"), body, err)
		}
	}
}
