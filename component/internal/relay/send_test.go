package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowConn records every write and takes a while over each, as a socket
// with a busy reader does.
type slowConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (c *slowConn) Write(b []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(b))
	return len(b), nil
}

func TestSendGathersConcurrentStanzas(t *testing.T) {
	conn := &slowConn{}
	r := &Relay{server: conn}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- r.Send([]byte(fmt.Sprintf("<iq id='%d'/>", i))) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	var all strings.Builder
	for _, w := range conn.writes {
		if !strings.HasPrefix(string(w), "<iq id='") || !strings.HasSuffix(string(w), "/>") {
			t.Errorf("a write that is not whole stanzas: %q", w)
		}
		all.Write(w)
	}
	for i := range n {
		if c := strings.Count(all.String(), fmt.Sprintf("<iq id='%d'/>", i)); c != 1 {
			t.Errorf("stanza %d written %d times", i, c)
		}
	}
	if len(conn.writes) >= n/2 {
		t.Errorf("%d concurrent stanzas took %d writes; want them gathered", n, len(conn.writes))
	}
	t.Logf("%d stanzas in %d writes", n, len(conn.writes))
}

func TestSendReportsTheWriteError(t *testing.T) {
	broken := errors.New("connection reset")
	conn := &slowConn{err: broken}
	r := &Relay{server: conn}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := r.Send([]byte(fmt.Sprintf("<iq id='%d'/>", i))); !errors.Is(err, broken) {
				t.Errorf("Send of stanza %d: %v, want the write's error", i, err)
			}
		})
	}
	wg.Wait()
	if err := r.Send(nil); err != nil {
		t.Errorf("Send of nothing: %v", err)
	}
}
