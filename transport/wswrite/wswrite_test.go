package wswrite

import (
	"bytes"
	"testing"
)

// TestAppendText: the header's length takes 7, 7+16 or 7+64 bits as RFC
// 6455 section 5.2 asks, and head and data follow in order.
func TestAppendText(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 1}},
		{124, []byte{0x81, 125}},
		{125, []byte{0x81, 126, 0, 126}},
		{65534, []byte{0x81, 126, 0xff, 0xff}},
		{65535, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		data := bytes.Repeat([]byte{'x'}, tc.n)
		got := AppendText([]byte("keep"), []byte{'4'}, data)
		if !bytes.HasPrefix(got, []byte("keep")) {
			t.Fatalf("%d: the buffer's bytes were overwritten", tc.n)
		}
		got = got[4:]
		if !bytes.Equal(got[:len(tc.want)], tc.want) {
			t.Errorf("%d bytes of data: header % x, want % x", tc.n, got[:len(tc.want)], tc.want)
		}
		if body := got[len(tc.want):]; body[0] != '4' || !bytes.Equal(body[1:], data) {
			t.Errorf("%d bytes of data: payload not head then data", tc.n)
		}
	}
}
