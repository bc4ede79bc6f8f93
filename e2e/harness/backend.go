package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// BackendPrefix is the path under which the backend serves rosters; the
// sidecar is configured with ROSTER_SIDECAR_HTTP_ROSTER_URL = URL + prefix + "%s".
const BackendPrefix = "/roster/"

// Contact is one roster entry: what the backend sends for a user and what
// the tests expect on the XMPP server.
type Contact struct {
	// JID is the contact's JID as the backend spells it. Expectations
	// compare its normalised form.
	JID string
	// Name is the display name ("" for none).
	Name string
	// Groups are the roster groups.
	Groups []string
	// Subscription is sent only when not empty; the backend contract's
	// default, and the expectation for "", is "both".
	Subscription string
}

// Reply scripts the backend's answer for one user.
type Reply struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Body is sent verbatim when not empty; otherwise Contacts is
	// encoded as the roster JSON object.
	Body string
	// Contacts is the roster (nil encodes as {}).
	Contacts []Contact
	// Delay holds the answer back (cut short if the client goes away).
	Delay time.Duration
	// ETag and LastModified, when set, are sent with a 200 answer as the
	// validators of the roster, and a conditional request they match is
	// answered 304 Not Modified without a body: If-None-Match when the
	// request has it (equal to ETag, or "*"), else If-Modified-Since not
	// before LastModified (PROTOCOL.md section 1, "Conditional requests").
	ETag         string
	LastModified time.Time
}

// BackendRequest is one request the backend received.
type BackendRequest struct {
	// User is the decoded username from the path.
	User string
	// EscapedPath is the path exactly as sent.
	EscapedPath string
	// Method, Accept and Authorization are from the request.
	Method, Accept, Authorization string
	// IfNoneMatch and IfModifiedSince are the conditional headers sent.
	IfNoneMatch, IfModifiedSince string
	// Status is the status answered.
	Status int
	// At is when it arrived.
	At time.Time
}

// Backend is a scriptable in-process roster backend (PROTOCOL.md section 1).
// Users without a script get 404, so an unexpected fetch shows up as an
// error instead of an empty roster.
type Backend struct {
	*httptest.Server
	mu       sync.Mutex
	replies  map[string]Reply
	requests []BackendRequest
}

// NewBackend starts a backend closed at the end of the test.
func NewBackend(t TB) *Backend {
	t.Helper()
	b := &Backend{replies: map[string]Reply{}}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

// RosterURL is the value for ROSTER_SIDECAR_HTTP_ROSTER_URL.
func (b *Backend) RosterURL() string { return b.URL + BackendPrefix + "%s" }

// Set scripts the reply for user (the decoded username).
func (b *Backend) Set(user string, r Reply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replies[user] = r
}

// SetRoster scripts a 200 answer with the given contacts.
func (b *Backend) SetRoster(user string, contacts ...Contact) {
	b.Set(user, Reply{Contacts: contacts})
}

// SetRosterConditional scripts a 200 answer with the given contacts that
// carries validators, as a backend that implements conditional requests
// does: an ETag that is a hash of the body and Last-Modified now (to the
// second); a request that sends them back gets 304 until the roster is set
// again.
func (b *Backend) SetRosterConditional(user string, contacts ...Contact) {
	sum := sha256.Sum256([]byte(EncodeRoster(contacts)))
	b.Set(user, Reply{Contacts: contacts, ETag: `"` + hex.EncodeToString(sum[:12]) + `"`,
		LastModified: time.Now().Truncate(time.Second)})
}

// notModified reports whether a request with the conditional headers
// inm and ims may be answered 304 for reply.
func (reply Reply) notModified(inm, ims string) bool {
	if inm != "" {
		if reply.ETag == "" {
			return false
		}
		for tag := range strings.SplitSeq(inm, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(reply.ETag, "W/") {
				return true
			}
		}
		return false
	}
	if ims == "" || reply.LastModified.IsZero() {
		return false
	}
	t, err := http.ParseTime(ims)
	return err == nil && !reply.LastModified.Truncate(time.Second).After(t)
}

// Requests returns the requests received so far for user ("" for all).
func (b *Backend) Requests(user string) []BackendRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []BackendRequest
	for _, r := range b.requests {
		if user == "" || r.User == user {
			out = append(out, r)
		}
	}
	return out
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	rec := BackendRequest{
		EscapedPath:     escaped,
		Method:          r.Method,
		Accept:          r.Header.Get("Accept"),
		Authorization:   r.Header.Get("Authorization"),
		IfNoneMatch:     r.Header.Get("If-None-Match"),
		IfModifiedSince: r.Header.Get("If-Modified-Since"),
		At:              time.Now(),
	}
	user, ok := strings.CutPrefix(escaped, BackendPrefix)
	if ok {
		if u, err := url.PathUnescape(user); err == nil {
			rec.User = u
		} else {
			ok = false
		}
	}
	b.mu.Lock()
	reply, scripted := b.replies[rec.User]
	status := reply.Status
	switch {
	case !ok || r.Method != http.MethodGet:
		status = http.StatusBadRequest
	case !scripted:
		status = http.StatusNotFound
	case status == 0 && reply.notModified(rec.IfNoneMatch, rec.IfModifiedSince):
		status = http.StatusNotModified
	case status == 0:
		status = http.StatusOK
	}
	rec.Status = status
	b.requests = append(b.requests, rec)
	b.mu.Unlock()

	if !ok || r.Method != http.MethodGet {
		http.Error(w, "not a roster request", http.StatusBadRequest)
		return
	}
	if !scripted {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	if reply.Delay > 0 {
		select {
		case <-time.After(reply.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if reply.ETag != "" {
		w.Header().Set("ETag", reply.ETag)
	}
	if !reply.LastModified.IsZero() {
		w.Header().Set("Last-Modified", reply.LastModified.UTC().Format(http.TimeFormat))
	}
	if status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	body := reply.Body
	if body == "" {
		body = EncodeRoster(reply.Contacts)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// EncodeRoster renders contacts as the backend's JSON object.
func EncodeRoster(contacts []Contact) string {
	type entry struct {
		Name         string   `json:"name,omitempty"`
		Groups       []string `json:"groups,omitempty"`
		Subscription string   `json:"subscription,omitempty"`
	}
	m := make(map[string]entry, len(contacts))
	for _, c := range contacts {
		m[c.JID] = entry{Name: c.Name, Groups: c.Groups, Subscription: c.Subscription}
	}
	out, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(out)
}
