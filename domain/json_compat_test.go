package domain

import (
	stdjson "encoding/json"
	"reflect"
	"strings"
	"testing"

	json "github.com/segmentio/encoding/json"
)

// The log's envelopes, payloads and push frames go through
// segmentio/encoding/json (docs/architecture.md "JSON"), several times
// faster than encoding/json. A record must mean the same whichever
// decoder reads it (a replay by an older build, an analyst's tool), so for
// any input both accept the same things, decode the same values and encode
// them to the same bytes.
func FuzzJSONAgreesWithStdlib(f *testing.F) {
	f.Add([]byte(`{"id":"e_1","type":"chat.message_sent.v1","conversation_id":"c_1","actor":"a","at":"2026-01-01T00:00:00.123456Z","data":{"message_id":"m","client_msg_id":"x","body":"hi <b>&</b> \u00e9 \ud83d\ude00","reply_to":"m0"}}`))
	f.Add([]byte(`{"kind":"group","title":"t","members":["a","b"],"user_id":"u","up_to_seq":12,"message_seq":-1,"emoji":"👍"}`))
	f.Add([]byte(`{"ID":"x","Type":"y","data":null,"at":null,"extra":[1,{"a":2}]}`))
	f.Add([]byte(`{"body":"\xff\xfe bad utf8","message_id":"\u0000","up_to_seq":1e3}`))
	f.Add([]byte(`{"up_to_seq":"12","members":{},"data":[1,2,]}`))
	f.Add([]byte(`{"type":"message","seq":5,"data":{"a":"b"}}`))
	f.Add([]byte(`{"id":"e","data":` + strings.Repeat("[", MaxJSONDepth-1) + strings.Repeat("]", MaxJSONDepth-1) + `}`))
	f.Add([]byte(`{"id":"e","data":` + strings.Repeat(`[{"a":"[\"",`, MaxJSONDepth/2) + strings.Repeat("}]", MaxJSONDepth/2) + `}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if TooDeep(b) {
			// DecodeEvent refuses these before segmentio (which has no
			// nesting limit) sees them, as encoding/json does.
			if _, err := DecodeEvent(b); err == nil {
				t.Fatalf("DecodeEvent accepted JSON nested deeper than %d", MaxJSONDepth)
			}
			if stdjson.Valid(b) {
				t.Fatalf("TooDeep, but encoding/json accepts it: %q", b)
			}
			return
		}
		for _, target := range []any{&Event{}, &MessageSent{}, &MessageEdited{}, &MessageDeleted{},
			&ConversationCreated{}, &MemberChanged{}, &ReadMarked{}, &Reaction{}, &PushFrame{}} {
			agree(t, b, target)
		}
	})
}

// agree decodes b into a fresh value of target's type with both decoders
// and compares the outcome, then the encodings of what was decoded.
func agree(t *testing.T, b []byte, target any) {
	typ := reflect.TypeOf(target).Elem()
	std, seg := reflect.New(typ).Interface(), reflect.New(typ).Interface()
	errStd, errSeg := stdjson.Unmarshal(b, std), json.Unmarshal(b, seg)
	if errStd == nil && errSeg != nil && lenientTime(errSeg) {
		return
	}
	if (errStd == nil) != (errSeg == nil) {
		t.Fatalf("%s: encoding/json says %v, segmentio says %v, on %q", typ, errStd, errSeg, b)
	}
	if errStd != nil {
		return
	}
	if !reflect.DeepEqual(std, seg) {
		t.Fatalf("%s: decoded %#v (encoding/json) and %#v (segmentio) from %q", typ, std, seg, b)
	}
	outStd, errStd := stdjson.Marshal(std)
	outSeg, errSeg := json.Marshal(seg)
	if (errStd == nil) != (errSeg == nil) || string(outStd) != string(outSeg) {
		t.Fatalf("%s: encoded %q, %v (encoding/json) and %q, %v (segmentio)", typ, outStd, errStd, outSeg, errSeg)
	}
}

// lenientTime: segmentio refused a timestamp that is not RFC 3339 as the
// producers write it (time.Time.MarshalJSON), which encoding/json's
// time.Parse tolerates (a one-digit hour, a comma before the fraction).
// Such a record is skipped by the projector and the fan-out as every
// undecodable record is: the one difference, on purpose.
func lenientTime(err error) bool {
	return strings.Contains(err.Error(), "of type time.Time")
}

// TooDeep draws the line where encoding/json does.
func TestTooDeepMatchesTheStdlibLimit(t *testing.T) {
	for _, depth := range []int{1, MaxJSONDepth - 1, MaxJSONDepth, MaxJSONDepth + 1, 3 * MaxJSONDepth} {
		for _, b := range [][]byte{
			[]byte(strings.Repeat("[", depth) + strings.Repeat("]", depth)),
			[]byte(strings.Repeat(`{"k\"[{":`, depth-1) + `{}` + strings.Repeat("}", depth-1)),
			[]byte(`{"s":"` + strings.Repeat("[", 2*MaxJSONDepth) + `","d":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`),
		} {
			want := !stdjson.Valid(b)
			if got := TooDeep(b); got != want {
				t.Errorf("depth %d, %.30q...: TooDeep %v, encoding/json refuses: %v", depth, b, got, want)
			}
		}
	}
}
