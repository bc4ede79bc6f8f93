package admin

import (
	"net/http"
	"strconv"
	"time"
)

// SignRequest signs r for a server configured with admin.hmac_secret
// secret (PROTOCOL.md "Signed requests"): it sets HeaderTimestamp to now
// and HeaderSignature to the signature of r's method, its request target
// (path and query, as r.URL.RequestURI() sends them) and body, which must
// be r's body exactly (nil for none). The server accepts each signature
// once: two requests of the same second with the same method, target and
// body need a different target (e.g. a query parameter) or body.
func SignRequest(r *http.Request, secret string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sum := sign([]byte(secret), ts, r.Method, r.URL.RequestURI(), body)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, formatSignature(sum))
}
