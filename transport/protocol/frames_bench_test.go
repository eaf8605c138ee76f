package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
)

// Hot path of every command: a client frame in, its reply out.
//
//	go test -run '^$' -bench . -benchmem ./transport/protocol/

var sendFrame = []byte(`{"id":12345,"type":"message.send","data":{"conversation_id":"c_5f2a9d0e7b3c4a1f8e6d2c0b9a8f7e6d",` +
	`"client_msg_id":"3f2a-11ee-9c1d-0242ac120002","body":"` + strings.Repeat("hello ", 16) + `"}}`)

func BenchmarkDecodeRequest(b *testing.B) {
	b.SetBytes(int64(len(sendFrame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(sendFrame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSendData is the second half of decoding: data into the
// command struct.
func BenchmarkDecodeSendData(b *testing.B) {
	req, err := DecodeRequest(sendFrame)
	if err != nil {
		b.Fatal(err)
	}
	var c struct {
		ConversationID string `json:"conversation_id"`
		ClientMsgID    string `json:"client_msg_id"`
		Body           string `json:"body"`
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeData(req.Data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSendReply encodes the ok reply to message.send as the
// gateway does (encoding/json of Reply).
func BenchmarkEncodeSendReply(b *testing.B) {
	msg := domain.Message{ConversationID: "c_5f2a9d0e7b3c4a1f8e6d2c0b9a8f7e6d", MessageID: "m_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
		Seq: 123456, SenderID: "alice", ClientMsgID: "3f2a-11ee-9c1d-0242ac120002", Body: strings.Repeat("hello ", 16),
		SentAt: time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)}
	r := OKReply(12345, map[string]any{"message": msg})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeErrorReply(b *testing.B) {
	err := domain.ErrRateLimited
	b.ReportAllocs()
	for b.Loop() {
		if _, e := json.Marshal(ErrorReply(7, err)); e != nil {
			b.Fatal(e)
		}
	}
}
