package relay

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Namespaces the filter knows.
const (
	nsComponent  = "jabber:component:accept"
	nsClient     = "jabber:client"
	nsStreams    = "http://etherx.jabber.org/streams"
	nsStreamErr  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsPrivilege1 = "urn:xmpp:privilege:1"
	nsPrivilege2 = "urn:xmpp:privilege:2"
)

// Package relay sits between gosrc.io/xmpp's component and the XMPP server.
// It passes on to the library only what the library can always decode, and
// handles every IQ itself.
//
// The library decodes every stanza the server sends into typed structs
// before any handler sees it, and a decode error ends its receive loop and
// with it the connection. Users control much of what the server sends the
// component: their presence (forwarded under the presence privilege, and
// sent again by Prosody at every reconnect), and any message or IQ they
// address to the component's JID. One user sending
// <presence><x xmlns='urn:a'><priority>128</priority></x></presence> (an
// int8 in the library, matched in any namespace and at any depth), or an
// IQ result whose roster query carries an RSM <set><count>x</count></set>,
// would drop the link.
//
// So the library does not talk to the server directly: it connects to a
// loopback relay (Relay; it takes only a connection dialled by this
// process, see dialledHere) that passes what it sends to the server
// unchanged and, in the other direction, passes on only:
//   - presence: the start tag (from, to, type) and no children;
//   - message: only <privilege/> children (urn:xmpp:privilege:1 and :2);
//   - the handshake and stream errors: unchanged.
//
// IQs never reach the library. Results and errors go to Handler.Reply with
// their raw bytes, for the component to match against the requests it is
// waiting for and to decode itself (string fields only); requests go to
// Handler.Request, which answers them. Anything else (which servers do not
// send, and the library cannot decode) is dropped. The component writes
// its own stanzas straight to the server (Send); the library only does the
// handshake and closes the stream.

// Handler takes the IQs the relay reads. Its methods run on the relay's
// read goroutine, one stanza at a time, and must not block.
type Handler interface {
	// Reply takes an IQ of type result or error. raw is the whole
	// stanza, valid only during the call; bare is true when it has no
	// child element.
	Reply(id, from string, raw []byte, bare bool)
	// Request takes an IQ of type get or set; child is the name of its
	// first child element (zero when it has none).
	Request(typ, id, from, to string, child xml.Name)
}

// Relay relays one component connection between the library and the
// server.
type Relay struct {
	ln      net.Listener
	server  net.Conn
	handler Handler // may be nil

	wg sync.WaitGroup // the relay's goroutines

	// wmu serialises writes to the server: each write is whole stanzas,
	// from send or from the library (which writes each stanza with one
	// write, and after the handshake only the stream's end).
	wmu sync.Mutex

	mu        sync.Mutex
	client    net.Conn
	closed    bool
	streamErr *StreamError
}

// StreamError is a stream error the server sent (RFC 6120 4.9).
type StreamError struct {
	// Condition is the defined condition, e.g. conflict or host-unknown.
	Condition string
}

func (e *StreamError) Error() string { return "stream error from the XMPP server: " + e.Condition }

// StreamError returns the stream error the server sent, or nil.
func (r *Relay) StreamError() *StreamError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streamErr
}

func (r *Relay) setStreamError(condition string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streamErr == nil {
		r.streamErr = &StreamError{Condition: condition}
	}
}

// Start dials the server (so that dial errors are the usual
// ones) and listens on a loopback port for the library to connect to.
// h, when not nil, takes the IQs.
func Start(address string, timeout time.Duration, h Handler) (*Relay, error) {
	server, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("relay listener: %w", err)
	}
	r := &Relay{ln: ln, server: server, handler: h}
	r.wg.Go(func() { r.run(timeout) })
	return r, nil
}

// Addr is the address for the library to dial.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// run accepts the library's connection and relays until either side ends.
func (r *Relay) run(timeout time.Duration) {
	defer r.Close()
	if tl, ok := r.ln.(*net.TCPListener); ok && timeout > 0 {
		_ = tl.SetDeadline(time.Now().Add(timeout))
	}
	client, err := r.acceptOwn()
	r.ln.Close()
	if err != nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		client.Close()
		return
	}
	r.client = client
	r.mu.Unlock()
	r.wg.Go(func() {
		_ = r.forward(client)
		r.Close()
	})
	_ = filter(client, r.server, r.handler, r.setStreamError)
}

// acceptOwn accepts the library's connection. Connections that another
// local process makes to the port first are closed; where the system cannot
// tell who dialled (see dialledHere), the first connection is taken.
func (r *Relay) acceptOwn() (net.Conn, error) {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return nil, err
		}
		if own, err := dialledHere(c); own || err != nil {
			return c, nil
		}
		c.Close()
	}
}

// Send writes whole stanzas to the server.
func (r *Relay) Send(b []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.server.Write(b)
	return err
}

// forward passes what the library writes on to the server.
func (r *Relay) forward(client net.Conn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if werr := r.Send(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// Wait waits for the relay's goroutines to end, after Close.
func (r *Relay) Wait() { r.wg.Wait() }

// Close ends both connections; it is safe to call more than once.
func (r *Relay) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.ln.Close()
	r.server.Close()
	if r.client != nil {
		r.client.Close()
	}
}

// tapReader keeps every byte read from r, addressed by stream offset, until
// released.
type tapReader struct {
	r    io.Reader
	buf  []byte
	base int64 // stream offset of buf[0]
	// flush, when set, runs before each read of r, which may block: the
	// output buffered so far goes out before the relay waits for input.
	flush func() error
}

func (t *tapReader) Read(p []byte) (int, error) {
	if t.flush != nil {
		if err := t.flush(); err != nil {
			return 0, err
		}
	}
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// bytes returns the bytes from stream offset from to to.
func (t *tapReader) bytes(from, to int64) []byte { return t.buf[from-t.base : to-t.base] }

// release forgets the bytes before stream offset off.
func (t *tapReader) release(off int64) {
	n := copy(t.buf, t.buf[off-t.base:])
	t.buf = t.buf[:n]
	t.base = off
}

// stanzaState collects one stanza while it is read.
type stanzaState struct {
	name     xml.Name // resolved
	typ      string
	id       string
	from, to string
	start    int64 // offset of '<'
	startEnd int64 // offset after the start tag
	keep     [][2]int64
	childAt  int64
	child    xml.Name
	// hasChild and firstChild: the stanza's first child element.
	hasChild   bool
	firstChild xml.Name
	// condition is a stream error's defined condition.
	condition string
}

func (st *stanzaState) isStreamError() bool {
	return st.name.Space == nsStreams && st.name.Local == "error"
}

// Filter is the relay's read side: it reads the server's stream from src
// and writes the filtered stream to out, until an error. What one read of src brings is written to
// dst at once, before the next read: one write for many stanzas when the
// server answers many IQs in a row. IQs go to h (dropped when h is nil).
func Filter(out io.Writer, src io.Reader, h Handler) error {
	return filter(out, src, h, nil)
}

// filter is Filter that also tells streamError, when not nil, the
// condition of a stream error before passing it on.
func filter(out io.Writer, src io.Reader, h Handler, streamError func(condition string)) (err error) {
	dst := bufio.NewWriterSize(out, 64<<10)
	defer func() { // what was read before the end
		if ferr := dst.Flush(); err == nil {
			err = ferr
		}
	}()
	tap := &tapReader{r: src, flush: dst.Flush}
	d := xml.NewDecoder(tap)
	var depth int
	var st *stanzaState
	for {
		before := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return err
		}
		after := d.InputOffset()
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1: // the stream header and what precedes it
				if _, err := dst.Write(tap.bytes(tap.base, after)); err != nil {
					return err
				}
				tap.release(after)
			case 2:
				st = &stanzaState{name: t.Name, start: before, startEnd: after}
				for _, a := range t.Attr {
					if a.Name.Space != "" {
						continue
					}
					switch a.Name.Local {
					case "type":
						st.typ = a.Value
					case "id":
						st.id = a.Value
					case "from":
						st.from = a.Value
					case "to":
						st.to = a.Value
					}
				}
			case 3:
				st.childAt, st.child = before, t.Name
				if !st.hasChild {
					st.hasChild, st.firstChild = true, t.Name
				}
				if st.isStreamError() && t.Name.Space == nsStreamErr && t.Name.Local != "text" && st.condition == "" {
					st.condition = t.Name.Local
				}
			}
		case xml.EndElement:
			switch depth {
			case 3:
				if st.keepChild() {
					st.keep = append(st.keep, [2]int64{st.childAt, after})
				}
			case 2:
				if st.isStreamError() && streamError != nil {
					streamError(st.condition)
				}
				if st.isIQ() {
					st.handleIQ(h, tap, after)
				} else if _, err := dst.Write(st.assemble(tap, after)); err != nil {
					return err
				}
				tap.release(after)
				st = nil
			case 1: // </stream:stream>
				if _, err := dst.Write(tap.bytes(tap.base, after)); err != nil {
					return err
				}
				tap.release(after)
			}
			depth--
		default:
			if depth <= 1 { // XML declaration, whitespace between stanzas
				if _, err := dst.Write(tap.bytes(tap.base, after)); err != nil {
					return err
				}
				tap.release(after)
			}
		}
	}
}

// isIQ reports whether the stanza is an IQ.
func (st *stanzaState) isIQ() bool {
	return st.name.Local == "iq" && (st.name.Space == nsComponent || st.name.Space == nsClient)
}

// handleIQ hands the IQ that ends at end to h.
func (st *stanzaState) handleIQ(h Handler, tap *tapReader, end int64) {
	if h == nil {
		return
	}
	switch st.typ {
	case "result", "error":
		h.Reply(st.id, st.from, tap.bytes(st.start, end), !st.hasChild)
	case "get", "set":
		h.Request(st.typ, st.id, st.from, st.to, st.firstChild)
	}
}

// keepChild decides whether the child just read is passed on.
func (st *stanzaState) keepChild() bool {
	switch st.name.Local {
	case "message":
		return st.child.Local == "privilege" && (st.child.Space == nsPrivilege1 || st.child.Space == nsPrivilege2)
	}
	return false
}

// assemble returns the stanza to pass on (nil for none); end is the offset
// after it.
func (st *stanzaState) assemble(tap *tapReader, end int64) []byte {
	switch {
	case st.isStreamError():
		return tap.bytes(st.start, end)
	case st.name.Space != nsComponent && st.name.Space != nsClient:
		return nil // the library cannot decode it; servers send no such thing
	case st.name.Local == "handshake":
		return tap.bytes(st.start, end)
	case st.name.Local != "presence" && st.name.Local != "message":
		return nil
	}
	startTag := tap.bytes(st.start, st.startEnd)
	if bytes.HasSuffix(startTag, []byte("/>")) { // no children at all
		return startTag
	}
	out := make([]byte, 0, len(startTag)+64)
	out = append(out, startTag...)
	for _, k := range st.keep {
		out = append(out, tap.bytes(k[0], k[1])...)
	}
	out = append(out, "</"...)
	out = append(out, rawName(startTag)...)
	return append(out, '>')
}

// rawName returns the qualified name of a start tag as written.
func rawName(startTag []byte) []byte {
	name := startTag[1:]
	if i := bytes.IndexAny(name, " \t\r\n/>"); i >= 0 {
		name = name[:i]
	}
	return name
}
