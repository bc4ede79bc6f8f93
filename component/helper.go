package component

import (
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"time"
)

// NSHelper is the namespace of roster-sidecar's server helper, the Prosody
// module deploy/prosody/mod_roster_sidecar.lua: a server that advertises it
// as a disco#info feature of a user domain applies a user's whole change set
// in one request (ApplyBatch) and sends the presence that the subscriptions
// written allow, as it does on a subscription approval.
const NSHelper = "urn:xmpp:roster-sidecar:0"

// helperDetectTimeout bounds the disco#info query that looks for the helper:
// ejabberd may drop a component's IQs to a domain other than roster queries,
// and no answer means no helper.
const helperDetectTimeout = time.Second

// discoInfoQuery is the payload of the disco#info query.
const discoInfoQuery = `<query xmlns="http://jabber.org/protocol/disco#info"></query>`

// helperState is what one connection learnt about the helper.
type helperState struct {
	// done is closed once every user domain was asked (or the session
	// ended).
	done chan struct{}

	mu    sync.Mutex
	found map[string]bool // by lower-case domain
	// silent holds the domains that did not answer disco#info at all, as
	// ejabberd 24.12 does not answer a component's IQs other than roster
	// queries.
	silent map[string]bool
}

func newHelperState() *helperState {
	return &helperState{done: make(chan struct{}), found: map[string]bool{}, silent: map[string]bool{}}
}

func (h *helperState) get(domain string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.found[strings.ToLower(domain)]
}

func (h *helperState) info(domain string) ServerInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := strings.ToLower(domain)
	return ServerInfo{Helper: h.found[d], Silent: h.silent[d]}
}

func (h *helperState) set(domain string, found, silent bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.found[strings.ToLower(domain)] = found
	h.silent[strings.ToLower(domain)] = silent
}

// detectHelper asks every user domain for its disco#info and records which
// advertise NSHelper, then logs the outcome where it differs from the last
// connection's.
func (c *Conn) detectHelper(ctx context.Context, sess *session) {
	defer close(sess.helper.done)
	var wg sync.WaitGroup
	reasons := make([]string, len(c.cfg.UserDomains))
	for i, domain := range c.cfg.UserDomains {
		wg.Go(func() {
			found, silent, reason := c.askHelper(ctx, sess, domain)
			sess.helper.set(domain, found, silent)
			reasons[i] = reason
		})
	}
	wg.Wait()
	if ctx.Err() != nil || c.session() != sess {
		return
	}
	c.notify()
	for i, domain := range c.cfg.UserDomains {
		c.logHelper(domain, sess.helper.get(domain), reasons[i])
	}
}

// askHelper sends one disco#info query to domain; silent is set when it got
// no answer, and reason says why the helper counts as missing.
func (c *Conn) askHelper(ctx context.Context, sess *session, domain string) (found, silent bool, reason string) {
	ctx, cancel := context.WithTimeout(ctx, helperDetectTimeout)
	defer cancel()
	raw, err := c.roundTrip(ctx, sess, "disco", domain, func(id string) error {
		return sess.relay.Send(appendGet(nil, id, c.cfg.Domain, domain, discoInfoQuery))
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return false, true, "no disco#info answer within " + helperDetectTimeout.String()
	case err != nil:
		return false, false, "disco#info: " + err.Error()
	case !hasFeature(raw, NSHelper):
		return false, false, "not advertised in disco#info"
	}
	return true, false, ""
}

// discoInfo is what hasFeature reads of a disco#info result.
type discoInfo struct {
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"http://jabber.org/protocol/disco#info query>feature"`
}

// hasFeature reports whether the disco#info result raw lists feature.
func hasFeature(raw []byte, feature string) bool {
	var info discoInfo
	if raw == nil || xml.Unmarshal(raw, &info) != nil {
		return false
	}
	for _, f := range info.Features {
		if f.Var == feature {
			return true
		}
	}
	return false
}

// logHelper logs whether the helper was found for domain, once at the first
// connection and again when it changes.
func (c *Conn) logHelper(domain string, found bool, reason string) {
	domain = strings.ToLower(domain)
	c.mu.Lock()
	last, seen := c.helperLogged[domain]
	c.helperLogged[domain] = found
	c.mu.Unlock()
	if seen && last == found {
		return
	}
	if found {
		c.log.Info("server helper found: contacts see each other's presence at once, and each user's roster changes are one request",
			"domain", domain, "feature", NSHelper)
		return
	}
	c.log.Info("server helper not found: contacts see each other's presence only from their next status change or login, and each roster item is one XEP-0356 write; on Prosody, load mod_roster_sidecar (docs/deploy-prosody.md)",
		"domain", domain, "feature", NSHelper, "reason", reason)
}

// Helper reports whether the server helper (NSHelper) answers for domain on
// the current connection; known is false while it is being looked for, when
// not connected, and when the connection does not look for it
// (Config.DetectHelper).
func (c *Conn) Helper(domain string) (info ServerInfo, known bool) {
	sess := c.session()
	if sess == nil {
		return ServerInfo{}, false
	}
	select {
	case <-sess.helper.done:
		return sess.helper.info(domain), true
	default:
		return ServerInfo{}, false
	}
}

// WaitHelper waits until the current connection knows whether the server
// helper answers for domain (at most about a second after the handshake),
// and reports it; it returns ErrDisconnected when not connected, or ctx's
// error.
func (c *Conn) WaitHelper(ctx context.Context, domain string) (bool, error) {
	h, err := c.WaitServerInfo(ctx, domain)
	return h.Helper, err
}

// ServerInfo is what the component learnt of a user domain's server after
// connecting.
type ServerInfo struct {
	// Helper is true when the domain advertises NSHelper.
	Helper bool
	// Silent is true when the domain did not answer disco#info at all:
	// ejabberd (24.12) does not answer a component's IQs other than roster
	// queries; Prosody answers.
	Silent bool
}

// WaitServerInfo waits until the current connection has asked the user
// domains for their disco#info, and returns what domain answered.
func (c *Conn) WaitServerInfo(ctx context.Context, domain string) (ServerInfo, error) {
	sess := c.session()
	if sess == nil {
		return ServerInfo{}, ErrDisconnected
	}
	select {
	case <-sess.helper.done:
		return sess.helper.info(domain), nil
	case <-ctx.Done():
		return ServerInfo{}, ctx.Err()
	}
}

// CanBatch reports whether ApplyBatch may be used for owner's roster: the
// helper answers for owner's domain on the current connection. It waits
// until that is known. It implements rostersync.BatchStore.
func (c *Conn) CanBatch(ctx context.Context, owner string) bool {
	found, err := c.WaitHelper(ctx, domainOf(owner))
	return err == nil && found
}

// domainOf returns the domain of a JID.
func domainOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	return j
}
