package component

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"roster-sidecar/roster"
)

// benchItem is a typical roster item: name, one group, subscription.
var benchItem = roster.Item{JID: "contact1234@example.test", Name: "Contact Number 1234", Subscription: "both", Groups: []string{"Friends"}}

// BenchmarkEncodeRosterSet measures the encoding of one privileged roster
// SET: "append" is what SetRosterItem does, "marshal" what the library's
// Send did before (xml.Marshal of a *stanza.IQ), for comparison.
func BenchmarkEncodeRosterSet(b *testing.B) {
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = appendRosterSet(buf[:0], "rs1a2b3c-42", "roster.example.test", "john@example.test", benchItem)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			n = len(marshalRosterSet(b, "rs1a2b3c-42", "roster.example.test", "john@example.test", benchItem))
		}
		b.SetBytes(int64(n))
	})
}

// rosterResultXML returns a roster GET result with n items, as a server
// sends it.
func rosterResultXML(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`<iq xmlns="jabber:component:accept" type="result" id="rs1a2b3c-42" from="john@example.test" to="roster.example.test"><query xmlns="jabber:iq:roster">`)
	for i := range n {
		fmt.Fprintf(&buf, `<item jid="contact%d@example.test" name="Contact Number %d" subscription="both"><group>Friends</group></item>`, i, i)
	}
	buf.WriteString(`</query></iq>`)
	return buf.Bytes()
}

// BenchmarkDecodeRosterResult measures the decoding of a roster GET result
// (decodeRoster, on the reading sync's goroutine).
func BenchmarkDecodeRosterResult(b *testing.B) {
	for _, n := range []int{100, 1000} {
		data := rosterResultXML(n)
		b.Run(strconv.Itoa(n)+"items", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if items := decodeRoster(data); len(items) != n {
					b.Fatalf("%d items", len(items))
				}
			}
		})
	}
}
