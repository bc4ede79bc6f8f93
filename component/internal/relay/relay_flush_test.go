package relay

import (
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
	results := `<iq type='result' id='a'/><iq type='result' id='b'/><iq type='result' id='c'/>`
	write(results)
	if got := next(); got != results {
		t.Fatalf("three results read at once: got %q in the first write, want all of them", got)
	}
	// A stanza split over two reads comes out whole once complete.
	write(`<iq type='result' id='d'>`)
	write(`</iq>`)
	if got := next(); got != `<iq type='result' id='d'></iq>` {
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

// TestFilterStreamHandsOverBareResults checks the fast path: IQ results
// without payload go to their waiter and not to the library, unless nobody
// waits for them; everything else is passed on.
func TestFilterStreamHandsOverBareResults(t *testing.T) {
	type taken struct{ id, from, to string }
	var got []taken
	results := func(id, from, to string) bool {
		if id == "unknown" {
			return false
		}
		got = append(got, taken{id, from, to})
		return true
	}
	body := `<iq type='result' id='set1' from='alice@example.test' to='roster.example.test'/>` +
		`<iq type='result' id='set2' from='bob@example.test' to='roster.example.test'></iq>` +
		`<iq type='result' id='get1' from='alice@example.test'><query xmlns='jabber:iq:roster'><item jid='b@example.test'/></query></iq>` +
		`<iq type='result' id='ext'><x xmlns='urn:other'/></iq>` +
		`<iq type='error' id='err1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>` +
		`<iq type='result' id='unknown'/>` +
		`<message from='example.test'/>`
	var out strings.Builder
	_ = Filter(&out, strings.NewReader(streamHead+body+streamTail), results)

	want := []taken{
		{"set1", "alice@example.test", "roster.example.test"},
		{"set2", "bob@example.test", "roster.example.test"},
		{"ext", "", ""}, // its payload is not for the component: dropped anyway
	}
	if !slices.Equal(got, want) {
		t.Errorf("handed over %v, want %v", got, want)
	}
	passed := out.String()
	for _, id := range []string{"get1", "err1", "unknown"} {
		if !strings.Contains(passed, "id='"+id+"'") {
			t.Errorf("%s not passed on to the library: %s", id, passed)
		}
	}
	for _, id := range []string{"set1", "set2", "ext"} {
		if strings.Contains(passed, "id='"+id+"'") {
			t.Errorf("%s passed on although its waiter took it: %s", id, passed)
		}
	}
	if !strings.Contains(passed, "<message from='example.test'></message>") && !strings.Contains(passed, "<message from='example.test'/>") {
		t.Errorf("message not passed on: %s", passed)
	}
}

const (
	streamHead = `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x'>`
	streamTail = `</stream:stream>`
)
