// Package ejabberdapi reads and writes users' rosters through ejabberd's
// HTTP API (mod_http_api with mod_admin_extra's get_roster, add_rosteritem
// and delete_rosteritem, and user_resources and send_stanza for presence
// probes) instead of XEP-0356 privileged roster IQs. A *Client is a
// rostersync.Store: the sync engine is the same in both modes.
//
// It exists because ejabberd ignores the subscription of a privileged
// roster SET and stores every item with subscription "none", so contacts
// written over XEP-0356 never see each other online. ejabberd's own admin
// commands store the subscription they are given, push the item to the
// user's online clients and send the presence the change allows: when
// alice's item for bob gains "from", bob receives alice's presence at once;
// when it loses it, bob sees alice go unavailable.
//
// delete_rosteritem has a side effect: like a client's roster remove, it
// sends the contact unsubscribe and/or unsubscribed for the subscription
// the item had, which rewrites the contact's own item for the user. A sync
// of one user must not change another user's roster, or refreshing a pair
// would depend on the order of the two syncs. So a removal is done in two
// calls: add_rosteritem with subscription "none" first (no stanza is sent
// to the contact; the user's clients get a push, and the contact sees the
// user go unavailable if it had "from"), then delete_rosteritem of an item
// that now has no subscription, which sends nothing. Every call therefore
// changes exactly one user's roster, syncs of different users commute, and
// after refreshing both users of a pair both rosters equal the backend's,
// whatever the order or overlap of the two syncs.
//
// ejabberd sends presence on a gained "from" only: when bob's item for
// alice gains "to", bob's clients are sent nothing of alice. If alice's
// item for bob gained "from" earlier, alice's presence went to bob while
// bob's roster did not list her yet, and clients such as Converse.js drop
// presence from a JID not in their roster: bob would see alice offline
// until she changed status. So after a sync's writes the Syncer calls
// ProbePresence (rostersync.PresenceProber) for the contacts whose item
// gained "to": if bob has a session online, send_stanza routes a presence
// probe from bob's bare JID to alice's, each of alice's online sessions
// answers it with her current presence when her roster has "from" or
// "both" for bob, and bob's clients receive it after the roster push that
// added her.
package ejabberdapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
)

// DefaultTimeout bounds one API call when Config.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// maxBody bounds an answer; a get_roster of 10,000 items is about 1.5 MB.
const maxBody = 32 << 20

// Config configures a Client.
type Config struct {
	// URL is the base of the API, e.g. http://127.0.0.1:5281/api; command
	// names are appended to it.
	URL string
	// User and Password authenticate every call with HTTP Basic: the JID
	// and password of the account an api_permissions rule allows the
	// five commands (see deploy/ejabberd/ejabberd.yml). An empty User
	// sends no credentials (for a rule that trusts an IP address).
	User, Password string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient replaces the default client (tests).
	HTTPClient *http.Client
}

// Client is a rostersync.Store over ejabberd's HTTP API. It is safe for
// concurrent use.
type Client struct {
	base    string
	user    string
	pass    string
	timeout time.Duration
	hc      *http.Client
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the API URL must be an absolute http or https URL such as http://127.0.0.1:5281/api, got %q", cfg.URL)
	}
	if u.User != nil {
		return nil, errors.New("put the API credentials in the user and password settings, not in the URL")
	}
	c := &Client{
		base: strings.TrimRight(cfg.URL, "/") + "/", user: cfg.User, pass: cfg.Password,
		timeout: cfg.Timeout, hc: cfg.HTTPClient,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return c, nil
}

// Error is a failed API call: the HTTP status and ejabberd's message.
type Error struct {
	Command string
	Status  int
	Message string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("ejabberd API %s: HTTP %d", e.Command, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		s += " (check ejabberd_api.user/password and the api_permissions rule for the sidecar)"
	}
	return s
}

// contact is one item of a get_roster answer. Before 23.10 groups were one
// "group" string.
type contact struct {
	JID          string   `json:"jid"`
	Nick         string   `json:"nick"`
	Subscription string   `json:"subscription"`
	Pending      string   `json:"pending"`
	Groups       []string `json:"groups"`
	Group        string   `json:"group"`
}

// Roster reads owner's roster with get_roster. It implements
// rostersync.Store.
func (c *Client) Roster(ctx context.Context, owner string) ([]roster.Item, error) {
	local, host, err := split(owner)
	if err != nil {
		return nil, err
	}
	var contacts []contact
	if err := c.call(ctx, "get_roster", map[string]string{"user": local, "host": host}, &contacts); err != nil {
		return nil, fmt.Errorf("read roster of %s: %w", owner, err)
	}
	items := make([]roster.Item, 0, len(contacts))
	for _, ct := range contacts {
		groups := ct.Groups
		if groups == nil && ct.Group != "" {
			groups = []string{ct.Group}
		}
		it := roster.Item{JID: ct.JID, Name: ct.Nick, Subscription: ct.Subscription, Groups: groups}
		if ct.Pending == "out" || ct.Pending == "both" {
			it.Ask = "subscribe"
		}
		items = append(items, it)
	}
	return items, nil
}

// Put adds or replaces one item of owner's roster with add_rosteritem,
// which stores its subscription. It implements rostersync.Store.
func (c *Client) Put(ctx context.Context, owner string, item roster.Item) error {
	args, err := addArgs(owner, item.JID)
	if err != nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.JID, owner, err)
	}
	switch item.Subscription {
	case "":
		args["subs"] = roster.SubscriptionNone
	case roster.SubscriptionNone, roster.SubscriptionTo, roster.SubscriptionFrom, roster.SubscriptionBoth:
		args["subs"] = item.Subscription
	default:
		return fmt.Errorf("set %s in roster of %s: invalid subscription %q", item.JID, owner, item.Subscription)
	}
	args["nick"] = item.Name
	if item.Groups != nil {
		args["groups"] = item.Groups
	}
	if err := c.rescode(ctx, "add_rosteritem", args); err != nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.JID, owner, err)
	}
	return nil
}

// Remove deletes contact from owner's roster without touching the
// contact's own roster: add_rosteritem with subscription "none" first, then
// delete_rosteritem (see the package documentation). It implements
// rostersync.Store.
func (c *Client) Remove(ctx context.Context, owner, contact string) error {
	args, err := addArgs(owner, contact)
	if err != nil {
		return fmt.Errorf("remove %s from roster of %s: %w", contact, owner, err)
	}
	args["subs"] = roster.SubscriptionNone
	if err := c.rescode(ctx, "add_rosteritem", args); err != nil {
		return fmt.Errorf("remove %s from roster of %s: clearing its subscription: %w", contact, owner, err)
	}
	del := map[string]any{"localuser": args["localuser"], "localhost": args["localhost"], "user": args["user"], "host": args["host"]}
	if err := c.rescode(ctx, "delete_rosteritem", del); err != nil {
		return fmt.Errorf("remove %s from roster of %s: %w", contact, owner, err)
	}
	return nil
}

// Sessions returns the resources of owner's sessions online, with
// user_resources (the command presence probes need, so that an API account
// may be checked for it without sending anything).
func (c *Client) Sessions(ctx context.Context, owner string) ([]string, error) {
	local, host, err := split(owner)
	if err != nil {
		return nil, err
	}
	return c.sessions(ctx, local, host)
}

func (c *Client) sessions(ctx context.Context, local, host string) ([]string, error) {
	var resources []string
	if err := c.call(ctx, "user_resources", map[string]string{"user": local, "host": host}, &resources); err != nil {
		return nil, err
	}
	return resources, nil
}

// ProbePresence sends, with send_stanza, a presence probe from owner's bare
// JID to each contact's bare JID, one call per contact, probeConcurrency in
// flight: ejabberd then sends owner's available sessions the current
// presence of each of the contact's available sessions, if the contact's
// roster lets owner see it ("from" or "both"); else nothing. It is meant
// for the contacts whose item in owner's roster has just gained a
// subscription "to" (see the package documentation).
//
// It first lists owner's sessions with user_resources, and sends nothing
// when there is none: the answers would reach no one, and a session that
// comes online later probes the contacts itself with its initial presence.
// (One call instead of a probe per contact for the users, often most, who
// are offline when their roster is written: a probe costs about what a
// roster write does.) It tries every contact, and returns how many probes
// were sent and, when some were not sent for a failure, an error that
// wraps the first one (an *Error when ejabberd refused a call). It
// implements rostersync.PresenceProber.
func (c *Client) ProbePresence(ctx context.Context, owner string, contacts []string) (sent int, err error) {
	local, host, err := split(owner)
	if err != nil {
		return 0, fmt.Errorf("probe presence for %s: %w", owner, err)
	}
	resources, err := c.sessions(ctx, local, host)
	if err != nil {
		return 0, fmt.Errorf("probe presence for %s: listing the user's sessions: %w", owner, err)
	}
	if len(resources) == 0 {
		return 0, nil
	}
	var n atomic.Int64
	var first error
	var once sync.Once
	var g errgroup.Group
	g.SetLimit(probeConcurrency)
	for _, contact := range contacts {
		g.Go(func() error {
			if err := c.probe(ctx, owner, contact); err != nil {
				once.Do(func() { first = err })
				return nil
			}
			n.Add(1)
			return nil
		})
	}
	_ = g.Wait()
	sent = int(n.Load())
	if first != nil {
		return sent, fmt.Errorf("%d of %d presence probes for %s failed, first: %w", len(contacts)-sent, len(contacts), owner, first)
	}
	return sent, nil
}

// probeConcurrency bounds the probes of one ProbePresence in flight.
const probeConcurrency = 8

// probeStanza is the stanza of a probe: send_stanza sets its from and to.
const probeStanza = `<presence type='probe'/>`

// probe sends one presence probe from owner to contact.
func (c *Client) probe(ctx context.Context, owner, contact string) error {
	cj, err := jid.Parse(contact)
	if err != nil || cj.Resourcepart() != "" {
		return fmt.Errorf("probe %q for %s: not a bare JID", contact, owner)
	}
	args := map[string]string{"from": owner, "to": cj.String(), "stanza": probeStanza}
	if err := c.rescode(ctx, "send_stanza", args); err != nil {
		return fmt.Errorf("probe %s for %s: %w", contact, owner, err)
	}
	return nil
}

// addArgs returns the arguments of an add_rosteritem of contact to owner's
// roster with no name, no groups and no subscription.
func addArgs(owner, contact string) (map[string]any, error) {
	local, host, err := split(owner)
	if err != nil {
		return nil, err
	}
	cj, err := jid.Parse(contact)
	if err != nil || cj.Resourcepart() != "" {
		return nil, fmt.Errorf("contact %q is not a bare JID", contact)
	}
	return map[string]any{
		"localuser": local, "localhost": host, "user": cj.Localpart(), "host": cj.Domainpart(),
		"nick": "", "groups": []string{}, "subs": roster.SubscriptionNone,
	}, nil
}

// split returns the localpart and domain of a bare user JID.
func split(user string) (local, host string, err error) {
	j, err := jid.Parse(user)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return "", "", fmt.Errorf("user %q is not a bare JID with a localpart", user)
	}
	return j.Localpart(), j.Domainpart(), nil
}

// rescode calls a command whose answer is a result code: 0 is success.
func (c *Client) rescode(ctx context.Context, command string, args any) error {
	var code json.RawMessage
	if err := c.call(ctx, command, args, &code); err != nil {
		return err
	}
	if s := strings.TrimSpace(string(code)); s != "0" {
		return &Error{Command: command, Status: http.StatusOK, Message: "result code " + s}
	}
	return nil
}

// call posts args as JSON to the command and decodes a 200 answer into out.
func (c *Client) call(ctx context.Context, command string, args, out any) error {
	body, err := json.Marshal(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+command, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ejabberd API %s: %w", command, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("ejabberd API %s: reading the answer: %w", command, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("ejabberd API %s: answer larger than %d bytes", command, maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Command: command, Status: resp.StatusCode}
		var msg struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &msg) == nil {
			e.Message = msg.Message
		}
		if e.Message == "" && len(b) < 200 {
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("ejabberd API %s: unexpected answer: %w", command, err)
	}
	return nil
}
