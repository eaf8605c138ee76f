package fanoutbus

import (
	"reflect"
	"testing"

	"github.com/parley-chat/parley/domain"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, d := range []domain.Delivery{
		{ConversationID: "c_1", Seq: 42, Partition: 7, Recipients: []string{"u1", "u2"}, Frame: []byte(`{"type":"x"}`), EventAtUnixMs: 1700000000000, Prev: 41},
		{ConversationID: "c_2", Recipients: []string{}, Frame: []byte(`{}`)}, // ephemeral: no seq
	} {
		b := Encode(nil, d)
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("round trip of %+v: %+v, %v", d, got, err)
		}
		if len(b) > encodedCap(d) {
			t.Fatalf("%+v: encoded %d bytes, above encodedCap %d", d, len(b), encodedCap(d))
		}
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	good := Encode(nil, domain.Delivery{ConversationID: "c_1", Seq: 1, Recipients: []string{"u1"}, Frame: []byte(`{}`)})
	for name, p := range map[string][]byte{
		"empty":          nil,
		"json (v0)":      []byte(`{"c":"c_1"}`),
		"truncated":      good[:6],
		"huge count":     {wireVersion, 0, 2, 0, 0, 1, 'c', 0xff, 0xff, 0xff, 0xff, 0x0f},
		"long recipient": {wireVersion, 0, 2, 0, 0, 1, 'c', 1, 100, 'u'},
	} {
		if _, err := Decode(p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzDecode: no input panics, and what decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, domain.Delivery{ConversationID: "c_1", Seq: 9, Partition: 3, Recipients: []string{"a", "b"}, Frame: []byte(`{"type":"message.new"}`)}))
	f.Add([]byte{wireVersion})
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := Decode(p)
		if err != nil {
			return
		}
		if len(p) > encodedCap(d) {
			t.Fatalf("%q: %d bytes, above encodedCap %d", p, len(p), encodedCap(d))
		}
		if again := Encode(nil, d); string(again) != string(p) {
			// Varints have one shortest form; a longer one decodes too.
			if d2, err := Decode(again); err != nil || !reflect.DeepEqual(d2, d) {
				t.Fatalf("re-encoded %x does not decode to %+v: %+v %v", again, d, d2, err)
			}
		}
	})
}
