package relay

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// chanWriter sends every Write to a channel.
type chanWriter chan string

func (w chanWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// TestFilterStreamCoalescesAndFlushes checks that what one read brings is
// written with one write, and before the relay waits for more input.
func TestFilterStreamCoalescesAndFlushes(t *testing.T) {
	src, feed := io.Pipe()
	out := make(chanWriter, 16)
	done := make(chan error, 1)
	go func() { done <- Filter(out, src, nil) }()

	next := func() string {
		t.Helper()
		select {
		case s := <-out:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("nothing written while the relay waits for input")
			return ""
		}
	}
	write := func(s string) {
		t.Helper()
		if _, err := io.WriteString(feed, s); err != nil {
			t.Fatal(err)
		}
	}

	write(streamHead)
	if got := next(); got != streamHead {
		t.Fatalf("stream header: got %q", got)
	}
	presences := `<presence from='a@x/r'/><presence from='b@x/r'/><presence from='c@x/r'/>`
	write(presences)
	if got := next(); got != presences {
		t.Fatalf("three presences read at once: got %q in the first write, want all of them", got)
	}
	// A stanza split over two reads comes out whole once complete.
	write(`<presence from='d@x/r'>`)
	write(`</presence>`)
	if got := next(); got != `<presence from='d@x/r'></presence>` {
		t.Fatalf("split stanza: got %q", got)
	}
	write(streamTail)
	if got := next(); got != streamTail {
		t.Fatalf("stream end: got %q", got)
	}
	feed.Close()
	if err := <-done; err == nil {
		t.Error("Filter returned nil at the end of its input")
	}
	select {
	case s := <-out:
		t.Errorf("unexpected output after the end: %q", s)
	default:
	}
}

// recordingHandler records the IQs the filter hands over.
type recordingHandler struct{ got []string }

func (h *recordingHandler) Reply(id, from string, raw []byte, bare bool) {
	h.got = append(h.got, fmt.Sprintf("reply %s from %q bare=%v: %s", id, from, bare, raw))
}

func (h *recordingHandler) Request(typ, id, from, to string, child xml.Name) {
	h.got = append(h.got, fmt.Sprintf("request %s %s from %q to %q: {%s}%s", typ, id, from, to, child.Space, child.Local))
}

// TestFilterHandsOverEveryIQ: IQs go to the handler, with the raw bytes of
// results and errors, and never to the library, whatever they carry.
func TestFilterHandsOverEveryIQ(t *testing.T) {
	body := `<iq type='result' id='set1' from='alice@example.test' to='roster.example.test'/>` +
		`<iq type='result' id='get1' from='alice@example.test'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>` +
		`<iq type='error' id='err1'><error type='cancel' code='x'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>` +
		`<iq type='get' id='p1' from='u@example.test/r' to='roster.example.test'><ping xmlns='urn:xmpp:ping'/></iq>` +
		`<iq type='set' id='s1' from='u@example.test/r'/>` +
		`<iq type='bogus' id='b1'/>` +
		`<message from='example.test'/>`
	var out strings.Builder
	h := &recordingHandler{}
	_ = Filter(&out, strings.NewReader(streamHead+body+streamTail), h)
	want := []string{
		`reply set1 from "alice@example.test" bare=true: <iq type='result' id='set1' from='alice@example.test' to='roster.example.test'/>`,
		`reply get1 from "alice@example.test" bare=false: <iq type='result' id='get1' from='alice@example.test'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>`,
		`reply err1 from "" bare=false: <iq type='error' id='err1'><error type='cancel' code='x'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`request get p1 from "u@example.test/r" to "roster.example.test": {urn:xmpp:ping}ping`,
		`request set s1 from "u@example.test/r" to "": {}`,
	}
	if !slices.Equal(h.got, want) {
		t.Errorf("handed over\n%s\nwant\n%s", strings.Join(h.got, "\n"), strings.Join(want, "\n"))
	}
	passed := out.String()
	if strings.Contains(passed, "<iq") {
		t.Errorf("an IQ reached the library: %s", passed)
	}
	if !strings.Contains(passed, "<message from='example.test'/>") {
		t.Errorf("message not passed on: %s", passed)
	}
}

const (
	streamHead = `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x'>`
	streamTail = `</stream:stream>`
)
