package domain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Event marshalling on the delivery path: the fan-out decodes each logged
// envelope, encodes the push frame once, and wraps it in a Delivery for the
// bus; every gateway decodes the Delivery again.
//
//	go test -run '^$' -bench . -benchmem ./domain/

func benchEvent(b *testing.B) (Event, []byte) {
	b.Helper()
	e, err := NewEvent(EvMessageSent, "c_5f2a9d0e7b3c4a1f8e6d2c0b9a8f7e6d", "alice", time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC),
		MessageSent{MessageID: "m_0a1b2c3d4e5f60718293a4b5c6d7e8f9", ClientMsgID: "3f2a-11ee-9c1d-0242ac120002",
			Body: strings.Repeat("hello ", 16)})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	return e, raw
}

func BenchmarkDecodeEvent(b *testing.B) {
	_, raw := benchEvent(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePush(b *testing.B) {
	e, _ := benchEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodePush(e, 4242); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewEvent(b *testing.B) {
	at := time.Now()
	p := MessageSent{MessageID: "m_0a1b2c3d4e5f60718293a4b5c6d7e8f9", ClientMsgID: "3f2a", Body: strings.Repeat("hello ", 16)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent(EvMessageSent, "c_5f2a9d0e7b3c4a1f8e6d2c0b9a8f7e6d", "alice", at, p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDelivery(b *testing.B, recipients int) Delivery {
	e, _ := benchEvent(b)
	frame, err := EncodePush(e, 4242)
	if err != nil {
		b.Fatal(err)
	}
	d := Delivery{ConversationID: e.ConversationID, Seq: 4242, Partition: 3, Frame: frame, EventAtUnixMs: 1, Prev: 4241}
	for i := range recipients {
		d.Recipients = append(d.Recipients, "user-"+strings.Repeat("x", 8)+string(rune('a'+i%26)))
	}
	return d
}

func BenchmarkDeliveryMarshal(b *testing.B) {
	for _, n := range []int{10, 100} {
		d := benchDelivery(b, n)
		b.Run(itoa(n)+"-recipients", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDeliveryUnmarshal(b *testing.B) {
	for _, n := range []int{10, 100} {
		raw, err := json.Marshal(benchDelivery(b, n))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(itoa(n)+"-recipients", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				var d Delivery
				if err := json.Unmarshal(raw, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var s []byte
	for ; n > 0; n /= 10 {
		s = append([]byte{byte('0' + n%10)}, s...)
	}
	return string(s)
}
