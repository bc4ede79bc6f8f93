package admin

// Request signatures (PROTOCOL.md "Signed requests"): with
// Config.HMACSecret, a /roster_admin request may be authenticated by
//
//	X-Roster-Sidecar-Timestamp: <Unix time in seconds>
//	X-Roster-Sidecar-Signature: v1=<HMAC-SHA256 in hex>
//
// where the HMAC, keyed with the secret, is over the string
//
//	v1:<timestamp>:<METHOD>:<request target>:<SHA-256 of the body in hex>
//
// The timestamp must be within SignatureWindow of the server's clock, and a
// signature is accepted once.

import (
	"bytes"
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// Headers and parameters of request signatures.
const (
	// HeaderTimestamp carries the Unix time of the signature, in seconds.
	HeaderTimestamp = "X-Roster-Sidecar-Timestamp"
	// HeaderSignature carries the signature, "v1=" and 64 hex digits.
	HeaderSignature = "X-Roster-Sidecar-Signature"
	// SignatureWindow is how far a signature's timestamp may be from the
	// server's clock, in the past or in the future.
	SignatureWindow = 5 * time.Minute
	// MinHMACSecretBytes is the shortest HMAC secret accepted: whoever sees
	// one signed request can try secrets offline.
	MinHMACSecretBytes = 16
	// signatureVersion prefixes the signed string and the signature.
	signatureVersion = "v1"
	// signatureScheme is the WWW-Authenticate challenge of signatures.
	signatureScheme = "Roster-Sidecar-Signature"
	// maxSeenSignatures bounds the signatures remembered against replays
	// (a few MiB); see replayCache.
	maxSeenSignatures = 1 << 16
	// maxTimestampDigits bounds the timestamp header.
	maxTimestampDigits = 19
)

// stringToSign is what the signature of a request covers: the version, the
// timestamp as sent, the method, the request target (path and query as
// sent) and the SHA-256 of the body, joined by colons. Only the target may
// contain a colon, and it sits between fields that cannot, so the string
// reads back one way only.
func stringToSign(timestamp, method, target string, body []byte) string {
	sum := sha256.Sum256(body)
	return signatureVersion + ":" + timestamp + ":" + method + ":" + target + ":" + hex.EncodeToString(sum[:])
}

// sign returns the HMAC-SHA256 of the request with secret.
func sign(secret []byte, timestamp, method, target string, body []byte) [sha256.Size]byte {
	mac := hmac.New(sha256.New, secret)
	_, _ = io.WriteString(mac, stringToSign(timestamp, method, target, body))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	return sum
}

// formatSignature is the value of HeaderSignature for sum.
func formatSignature(sum [sha256.Size]byte) string {
	return signatureVersion + "=" + hex.EncodeToString(sum[:])
}

// errSignatureHeader is the error of a malformed HeaderSignature.
var errSignatureHeader = errors.New(HeaderSignature + " must be v1= followed by 64 hex digits")

// parseSignature reads a HeaderSignature value: "v1=" and the 64 hex
// digits of the HMAC (either case), nothing else.
func parseSignature(v string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	digits, ok := strings.CutPrefix(v, signatureVersion+"=")
	if !ok || len(digits) != 2*sha256.Size {
		return sum, errSignatureHeader
	}
	if _, err := hex.Decode(sum[:], []byte(digits)); err != nil {
		return sum, errSignatureHeader
	}
	return sum, nil
}

// parseTimestamp reads a HeaderTimestamp value: the Unix time in seconds,
// decimal digits without a sign or leading zeros.
func parseTimestamp(v string) (int64, error) {
	bad := errors.New(HeaderTimestamp + " must be the Unix time in seconds, in decimal digits")
	if v == "" || len(v) > maxTimestampDigits || (v[0] == '0' && len(v) > 1) || strings.Trim(v, "0123456789") != "" {
		return 0, bad
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, bad
	}
	return ts, nil
}

// requestTarget is the request target a signature covers: the path and
// query exactly as on the request line. An absolute-form target (sent to a
// proxy) counts as its path and query.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// signed reports whether r carries a signature header.
func signed(r *http.Request) bool {
	return len(r.Header.Values(HeaderTimestamp)) > 0 || len(r.Header.Values(HeaderSignature)) > 0
}

// verifySignature checks the signature of r: the headers, the timestamp
// against the window, the HMAC of the request (read the body, up to
// MaxBodyBytes, and put it back for the handler), then that the signature
// was not used before. It returns a 401 error saying why it failed, or the
// 413 or 400 error of reading the body.
func (s *Server) verifySignature(r *http.Request) *echo.HTTPError {
	refuse := func(reason string) *echo.HTTPError {
		s.log.Info("admin: request signature refused", "code", http.StatusUnauthorized, "method", r.Method,
			"path", r.URL.Path, "reason", reason)
		return echo.NewHTTPError(http.StatusUnauthorized, "invalid request signature: "+reason)
	}
	tsValues, sigValues := r.Header.Values(HeaderTimestamp), r.Header.Values(HeaderSignature)
	switch {
	case len(tsValues) == 0:
		return refuse("no " + HeaderTimestamp + " header")
	case len(sigValues) == 0:
		return refuse("no " + HeaderSignature + " header")
	case len(tsValues) > 1 || len(sigValues) > 1:
		return refuse(HeaderTimestamp + " and " + HeaderSignature + " must be given once each")
	}
	ts, err := parseTimestamp(tsValues[0])
	if err != nil {
		return refuse(err.Error())
	}
	got, err := parseSignature(sigValues[0])
	if err != nil {
		return refuse(err.Error())
	}
	now := s.now().Unix()
	window := int64(SignatureWindow / time.Second)
	if ts < now-window || ts > now+window {
		when := "in the past"
		if ts > now {
			when = "in the future"
		}
		return refuse(fmt.Sprintf("its timestamp is more than %s %s (check the clocks)", SignatureWindow, when))
	}
	body, herr := s.readBody(r)
	if herr != nil {
		return herr
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	want := sign([]byte(s.cfg.HMACSecret), tsValues[0], r.Method, requestTarget(r), body)
	if !hmac.Equal(got[:], want[:]) {
		return refuse("it does not match the request (method, path and query, timestamp and body) signed with admin.hmac_secret")
	}
	if err := s.seen.add(got, ts, now-window); err != nil {
		return refuse(err.Error())
	}
	return nil
}

// replayCache remembers the signatures accepted whose timestamps are still
// within the window, so that each is accepted once. It holds at most max
// of them: beyond, it forgets the one with the oldest timestamp and from
// then on refuses every signature with a timestamp that old or older, so a
// forgotten signature can never be replayed (only a client that sends more
// than max signed requests within the window sees this, as a refusal of a
// request signed at least that long ago).
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[[sha256.Size]byte]struct{}
	order seenHeap
	// floor is the newest timestamp forgotten for room: signatures up to it
	// are refused.
	floor int64
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: map[[sha256.Size]byte]struct{}{}, floor: -1}
}

// add records sig with its timestamp ts, or returns why it is refused.
// Signatures with timestamps before oldest are out of the window: they are
// forgotten.
func (c *replayCache) add(sig [sha256.Size]byte, ts, oldest int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && c.order[0].ts < oldest {
		delete(c.seen, heap.Pop(&c.order).(seenSig).sig)
	}
	if _, dup := c.seen[sig]; dup {
		return errors.New("it was used before (a replay): sign every request anew")
	}
	if ts <= c.floor {
		return errors.New("too many signed requests within the window to remember one signed this long ago: sign with the current time")
	}
	c.seen[sig] = struct{}{}
	heap.Push(&c.order, seenSig{sig: sig, ts: ts})
	if len(c.seen) > c.max {
		old := heap.Pop(&c.order).(seenSig)
		delete(c.seen, old.sig)
		c.floor = max(c.floor, old.ts)
	}
	return nil
}

// seenSig is a remembered signature and its timestamp.
type seenSig struct {
	sig [sha256.Size]byte
	ts  int64
}

// seenHeap is a min-heap of seenSig by timestamp (container/heap).
type seenHeap []seenSig

func (h seenHeap) Len() int           { return len(h) }
func (h seenHeap) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h seenHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seenHeap) Push(x any)        { *h = append(*h, x.(seenSig)) }
func (h *seenHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
