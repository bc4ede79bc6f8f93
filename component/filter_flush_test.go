package component

import (
	"io"
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
	go func() { done <- filterStream(out, src) }()

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
		t.Error("filterStream returned nil at the end of its input")
	}
	select {
	case s := <-out:
		t.Errorf("unexpected output after the end: %q", s)
	default:
	}
}
