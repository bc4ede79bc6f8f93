package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"roster-sidecar/e2e/harness"
)

// rawComponent is a minimal XEP-0114 client for the benchmark's "server
// limit": it authenticates with sha1(stream id + secret) and then writes
// pre-encoded IQs with a window of outstanding requests, counting replies.
// It does no per-stanza work beyond reading the reply's type.
type rawComponent struct {
	conn net.Conn
	dec  *xml.Decoder
	// replies receives one value per IQ reply: "" for a result, else the
	// error condition.
	replies chan string
	// privileged is closed when the server's <privilege/> message came.
	privileged chan struct{}
	done       chan struct{}
	err        error // why the read loop ended; read after done
}

// dialComponent connects and authenticates as domain.
func dialComponent(ctx context.Context, addr, domain, secret string) (*rawComponent, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial component port: %w", err)
	}
	c := &rawComponent{conn: conn, dec: xml.NewDecoder(bufio.NewReaderSize(conn, 64<<10)),
		replies: make(chan string, 1024), privileged: make(chan struct{}), done: make(chan struct{})}
	if err := c.handshake(domain, secret); err != nil {
		_ = conn.Close()
		return nil, err
	}
	go c.readLoop()
	// Like the sidecar, wait for the privileges before sending anything.
	select {
	case <-c.privileged:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("stream ended before the privilege message: %w", c.err)
	case <-time.After(10 * time.Second):
		c.close()
		return nil, errors.New("no privilege message within 10 s")
	}
}

func (c *rawComponent) handshake(domain, secret string) error {
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.conn.SetDeadline(time.Time{}) }()
	header := "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' " +
		"xmlns:stream='http://etherx.jabber.org/streams' to='" + domain + "'>"
	if _, err := io.WriteString(c.conn, header); err != nil {
		return fmt.Errorf("write stream header: %w", err)
	}
	id := ""
	for id == "" {
		tok, err := c.dec.RawToken()
		if err != nil {
			return fmt.Errorf("read stream header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			id = attr(se, "id")
			if id == "" {
				return errors.New("stream header without id")
			}
		}
	}
	sum := sha1.Sum([]byte(id + secret))
	if _, err := io.WriteString(c.conn, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>"); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	for {
		tok, err := c.dec.RawToken()
		if err != nil {
			return fmt.Errorf("read handshake answer: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "handshake": // <handshake/>: read its end too
			for {
				tok, err := c.dec.RawToken()
				if err != nil {
					return fmt.Errorf("read handshake answer: %w", err)
				}
				if _, ok := tok.(xml.EndElement); ok {
					return nil
				}
			}
		case "error":
			return errors.New("handshake refused (stream error)")
		}
	}
}

// readLoop reports every IQ reply on c.replies until the stream ends.
func (c *rawComponent) readLoop() {
	defer close(c.done)
	depth := 1 // inside <stream:stream>
	inIQ, inError, isError := false, false, false
	cond := ""
	for {
		tok, err := c.dec.RawToken()
		if err != nil {
			c.err = err
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 2 && t.Name.Local == "iq":
				inIQ, inError, cond = true, false, ""
				isError = attr(t, "type") == "error"
			case depth == 2 && t.Name.Space == "stream" && t.Name.Local == "error":
				c.err = errors.New("stream error from the server")
				return
			case depth == 3 && t.Name.Local == "privilege":
				select {
				case <-c.privileged:
				default:
					close(c.privileged)
				}
			case inIQ && isError && depth == 3 && t.Name.Local == "error":
				inError = true
			case inError && depth == 4 && cond == "" && t.Name.Local != "text":
				cond = t.Name.Local
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				c.err = errors.New("stream closed by the server")
				return
			}
			if depth == 1 && inIQ {
				inIQ = false
				if isError && cond == "" {
					cond = "undefined-condition"
				}
				c.replies <- cond
			}
		}
	}
}

// close ends the stream and waits (briefly) for the server to close its side,
// so that the component JID is free again at once.
func (c *rawComponent) close() {
	_, _ = io.WriteString(c.conn, "</stream:stream>")
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	_ = c.conn.Close()
	<-c.done
}

// blastResult is the outcome of one blast.
type blastResult struct {
	Window  int
	Items   int
	Errors  int
	FirstEr string
	Wall    time.Duration
}

// Rate is replies per second.
func (r blastResult) Rate() float64 { return float64(r.Items) / r.Wall.Seconds() }

// blast writes stanzas keeping at most window without reply, and returns
// when every one was answered.
func (c *rawComponent) blast(ctx context.Context, stanzas [][]byte, window int) (blastResult, error) {
	return c.blastFlush(ctx, stanzas, window, false)
}

// blastFlush is blast; with each it writes every stanza with its own
// write, as a client without write coalescing does.
func (c *rawComponent) blastFlush(ctx context.Context, stanzas [][]byte, window int, each bool) (blastResult, error) {
	res := blastResult{Window: window, Items: len(stanzas)}
	if len(stanzas) == 0 {
		return res, nil
	}
	sem := make(chan struct{}, window)
	w := bufio.NewWriterSize(c.conn, 64<<10)
	var got atomic.Int64
	readDone := make(chan error, 1)
	go func() {
		stall := time.NewTimer(blastStall)
		defer stall.Stop()
		for range stanzas {
			select {
			case <-stall.C:
				readDone <- fmt.Errorf("after %d replies: no reply for %v", got.Load(), blastStall)
				return
			case cond := <-c.replies:
				stall.Reset(blastStall)
				if cond != "" {
					res.Errors++
					if res.FirstEr == "" {
						res.FirstEr = cond
					}
				}
				got.Add(1)
				<-sem
			case <-c.done:
				readDone <- fmt.Errorf("after %d replies: %w", got.Load(), c.err)
				return
			case <-ctx.Done():
				readDone <- fmt.Errorf("after %d replies: %w", got.Load(), ctx.Err())
				return
			}
		}
		readDone <- nil
	}()
	start := time.Now()
	for _, s := range stanzas {
		select {
		case sem <- struct{}{}:
		default:
			if err := w.Flush(); err != nil {
				return res, fmt.Errorf("write: %w", err)
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return res, ctx.Err()
			case err := <-readDone:
				return res, err
			}
		}
		if _, err := w.Write(s); err != nil {
			return res, fmt.Errorf("write: %w", err)
		}
		if each {
			if err := w.Flush(); err != nil {
				return res, fmt.Errorf("write: %w", err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return res, fmt.Errorf("write: %w", err)
	}
	err := <-readDone
	res.Wall = time.Since(start)
	return res, err
}

// blastStall is how long the blaster waits for any reply before it gives up.
const blastStall = 30 * time.Second

// probe sends one roster GET and waits for an answer: ejabberd sometimes
// takes a fresh component's privileges away again when another connection
// to its component port (such as a readiness check) closes at the same
// time, and then silently drops every IQ ("IQ not forwarded: Component
// seems disconnected").
func (c *rawComponent) probe(ctx context.Context, from, owner string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.blast(ctx, [][]byte{getStanza("probe", from, owner)}, 1) // any answer will do
	return err
}

// blastPad lengthens every contact name the blaster writes (experiments).
var blastPad string

// blastItemNS repeats the roster namespace on <item/>, as encoding/xml
// (and so the sidecar) writes it.
var blastItemNS bool

// setStanza encodes a privileged roster SET of one item, as the sidecar
// sends it (same attributes, same content).
func setStanza(id, from, owner string, c harness.Contact, remove bool) []byte {
	var b bytes.Buffer
	b.WriteString(`<iq type="set" id="`)
	b.WriteString(id)
	b.WriteString(`" from="`)
	xmlEscape(&b, from)
	b.WriteString(`" to="`)
	xmlEscape(&b, owner)
	b.WriteString(`"><query xmlns="jabber:iq:roster"><item `)
	if blastItemNS {
		b.WriteString(`xmlns="jabber:iq:roster" `)
	}
	b.WriteString(`jid="`)
	xmlEscape(&b, c.JID)
	b.WriteString(`"`)
	if remove {
		b.WriteString(` subscription="remove"></item></query></iq>`)
		return b.Bytes()
	}
	if c.Name != "" {
		b.WriteString(` name="`)
		xmlEscape(&b, c.Name+blastPad)
		b.WriteString(`"`)
	}
	sub := c.Subscription
	if sub == "" {
		sub = "both"
	}
	b.WriteString(` subscription="` + sub + `">`)
	for _, g := range c.Groups {
		b.WriteString("<group>")
		xmlEscape(&b, g)
		b.WriteString("</group>")
	}
	b.WriteString("</item></query></iq>")
	return b.Bytes()
}

// getStanza encodes a privileged roster GET, as the sidecar sends it.
func getStanza(id, from, owner string) []byte {
	var b bytes.Buffer
	b.WriteString(`<iq type="get" id="` + id + `" from="`)
	xmlEscape(&b, from)
	b.WriteString(`" to="`)
	xmlEscape(&b, owner)
	b.WriteString(`"><query xmlns="jabber:iq:roster"></query></iq>`)
	return b.Bytes()
}

func xmlEscape(b *bytes.Buffer, s string) { _ = xml.EscapeText(b, []byte(s)) }

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// iqCounts are the IQs one direction of a proxied component stream carried.
type iqCounts struct {
	RosterGet, RosterSet, OtherIQ, Result, Error int64
	Reads                                        int64 // reads (TCP segments, roughly) that carried them
}

func (c iqCounts) sub(o iqCounts) iqCounts {
	return iqCounts{c.RosterGet - o.RosterGet, c.RosterSet - o.RosterSet, c.OtherIQ - o.OtherIQ, c.Result - o.Result, c.Error - o.Error, c.Reads - o.Reads}
}

// iqProxy is a TCP proxy between the sidecar and the server's component
// port that counts the IQs in both directions, so that the benchmark can
// check from outside the sidecar what it sent.
type iqProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	out, in  iqScanner // sidecar -> server, server -> sidecar
	conns    []net.Conn
	accepted int
}

func startIQProxy(target string) (*iqProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &iqProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *iqProxy) Addr() string { return p.ln.Addr().String() }

func (p *iqProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, &p.out)
		go p.pipe(c, s, &p.in)
	}
}

func (p *iqProxy) pipe(dst, src net.Conn, sc *iqScanner) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			sc.feed(buf[:n])
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// Counts returns what the sidecar sent (out) and what the server answered (in).
func (p *iqProxy) Counts() (out, in iqCounts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.counts, p.in.counts
}

func (p *iqProxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// iqScanner counts "<iq " start tags in a byte stream by type, and roster
// queries among gets and sets, without an XML parser: stanza contents are
// escaped, so "<iq " only ever starts an IQ.
type iqScanner struct {
	counts iqCounts
	tail   []byte // an incomplete tag kept for the next chunk
}

const rosterQuery = `<query xmlns="jabber:iq:roster"`

func (s *iqScanner) feed(chunk []byte) {
	s.counts.Reads++
	data := chunk
	if len(s.tail) > 0 {
		data = append(s.tail, chunk...)
		s.tail = nil
	}
	for {
		i := bytes.Index(data, []byte("<iq "))
		if i < 0 {
			// Keep a possible partial "<iq" at the end.
			if k := bytes.LastIndexByte(data, '<'); k >= 0 && len(data)-k < 4 {
				s.tail = append([]byte(nil), data[k:]...)
			}
			return
		}
		data = data[i:]
		end := bytes.IndexByte(data, '>')
		if end < 0 {
			s.tail = append([]byte(nil), data...)
			return
		}
		tag := data[:end+1]
		typ := tagAttr(tag, "type")
		request := (typ == "get" || typ == "set") && !bytes.HasSuffix(tag, []byte("/>"))
		if request && len(data) < end+1+len(rosterQuery) {
			s.tail = append([]byte(nil), data...)
			return
		}
		roster := request && bytes.HasPrefix(data[end+1:], []byte(rosterQuery))
		switch {
		case typ == "get" && roster:
			s.counts.RosterGet++
		case typ == "set" && roster:
			s.counts.RosterSet++
		case typ == "result":
			s.counts.Result++
		case typ == "error":
			s.counts.Error++
		default:
			s.counts.OtherIQ++
		}
		data = data[end+1:]
	}
}

// tagAttr returns the value of a quoted attribute in a start tag.
func tagAttr(tag []byte, name string) string {
	for _, q := range []string{`"`, `'`} {
		key := " " + name + "=" + q
		i := bytes.Index(tag, []byte(key))
		if i < 0 {
			continue
		}
		rest := tag[i+len(key):]
		if j := strings.Index(string(rest), q); j >= 0 {
			return string(rest[:j])
		}
	}
	return ""
}

// blastID numbers the blaster's IQs.
func blastID(n int) string { return "b" + strconv.Itoa(n) }
