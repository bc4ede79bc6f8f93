package admin

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// Messages of the diff answer.
const (
	messageDiffComplete  = "roster diff complete"
	messageDiffAllFailed = "roster diff failed for all users"
)

// DiffResponse is the 200 body of POST /roster_admin/diff: what a refresh
// of each user would change, found without changing anything.
type DiffResponse struct {
	// Status is "ok" unless every user failed, then "error".
	Status string `json:"status"`
	// Message is "roster diff complete" or "roster diff failed for all
	// users".
	Message string `json:"message"`
	// Changed counts the users a refresh would change (an addition, an
	// update or a removal).
	Changed int `json:"changed"`
	// Unchanged counts the users already in line with the backend.
	Unchanged int `json:"unchanged"`
	// Errors counts the users whose rosters could not be read.
	Errors int `json:"errors"`
	// Results holds one entry per distinct user, in the order of first
	// appearance in the request.
	Results []UserDiff `json:"results"`
}

// UserDiff is what a refresh of one user would change.
type UserDiff struct {
	// User is the normalised localpart.
	User string `json:"user"`
	// Status is "ok" or "error".
	Status string `json:"status"`
	// Error says why the rosters could not be read; empty when Status is
	// "ok".
	Error string `json:"error,omitempty"`
	// Add, Update and Remove are the writes a refresh would make.
	Add    []DiffChange `json:"add,omitempty"`
	Update []DiffChange `json:"update,omitempty"`
	Remove []DiffChange `json:"remove,omitempty"`
	// SubscriptionOnly are the items that differ only in subscription
	// while the daemon does not know yet whether the server stores
	// subscriptions (xmpp.compare_subscription auto, nothing written yet):
	// a refresh rewrites them where it does (Prosody), not where it does
	// not (ejabberd). They are not in Update.
	SubscriptionOnly []DiffChange `json:"subscription_only,omitempty"`
	// Skipped lists backend contacts that would not be applied.
	Skipped []rosterhttp.Skipped `json:"skipped,omitempty"`
}

// DiffChange is one roster item a refresh would write.
type DiffChange struct {
	// JID is the contact's bare JID: normalised, or for a removal as the
	// server spells it.
	JID string `json:"jid"`
	// Want is the item a refresh would write; absent for a removal.
	Want *DiffItem `json:"want,omitempty"`
	// Have is the item the XMPP server holds now; absent for an addition.
	Have *DiffItem `json:"have,omitempty"`
	// Fields names what differs in an update: "name", "groups",
	// "subscription".
	Fields []string `json:"fields,omitempty"`
}

// DiffItem is a roster item's fields.
type DiffItem struct {
	Name         string   `json:"name"`
	Groups       []string `json:"groups"`
	Subscription string   `json:"subscription"`
}

// handleDiff serves POST /roster_admin/diff, the dry run of the bulk
// refresh: the body is the bulk refresh's (a JSON array of usernames,
// validated completely with the same limits: 413 over MaxBodyBytes, 400 for
// anything malformed, more than MaxUsers names or an invalid username). An
// empty array answers 200 at once; when the Syncer is not ready the answer
// is 503. Otherwise each distinct user's roster is fetched from the
// backend and read from the XMPP server (Syncer.Preview), at most
// Concurrency users at once, within RequestTimeout, and the answer is 200
// with what a refresh would change, even when users failed. Nothing is
// written, and no user's refresh waits for it.
func (s *Server) handleDiff(c echo.Context) error {
	start := time.Now()
	names, herr := s.readUsernames(c.Request())
	if herr != nil {
		return s.reject(herr)
	}
	users, err := s.normalise(names)
	if err != nil {
		return s.reject(badRequest(err))
	}
	if len(users) == 0 {
		return c.JSON(http.StatusOK, DiffResponse{Status: statusOK, Message: messageDiffComplete, Results: []UserDiff{}})
	}
	if err := s.ready(c); err != nil {
		s.log.Warn("admin: diff refused, not ready", "users", len(users), "reason", err)
		return c.JSON(http.StatusServiceUnavailable, ErrorResponse{Status: statusError, Message: err.Error()})
	}
	ctx, cancel := context.WithTimeoutCause(c.Request().Context(), s.cfg.RequestTimeout,
		fmt.Errorf("diff took longer than the request timeout of %s", s.cfg.RequestTimeout))
	defer cancel()
	resp := DiffResponse{Status: statusOK, Message: messageDiffComplete, Results: s.previewAll(ctx, users)}
	for _, r := range resp.Results {
		switch {
		case r.Status != statusOK:
			resp.Errors++
		case len(r.Add)+len(r.Update)+len(r.Remove) > 0:
			resp.Changed++
		default:
			resp.Unchanged++
		}
	}
	if resp.Errors == len(users) {
		resp.Status, resp.Message = statusError, messageDiffAllFailed
	}
	s.log.Info("admin: roster diff", "users", len(users), "changed", resp.Changed, "unchanged", resp.Unchanged,
		"errors", resp.Errors, "duration", time.Since(start))
	return c.JSON(http.StatusOK, resp)
}

// previewAll previews users, at most Concurrency at once, and returns
// their diffs in order. Users still waiting for a slot when ctx ends fail
// with "request cancelled"; a panic fails its user alone.
func (s *Server) previewAll(ctx context.Context, users []username) []UserDiff {
	results := make([]UserDiff, len(users))
	var notRead atomic.Int64
	var g errgroup.Group
	g.SetLimit(s.cfg.Concurrency)
	for i, u := range users {
		user := u.name
		if u.err != nil { // a domain not served: fails alone
			results[i] = UserDiff{User: user, Status: statusError, Error: s.notServedError(u).Error()}
			continue
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				notRead.Add(1)
				results[i] = UserDiff{User: user, Status: statusError, Error: cancelled(ctx).Error()}
				return nil
			}
			results[i] = s.previewOne(ctx, user)
			return nil
		})
	}
	_ = g.Wait()
	if n := notRead.Load(); n > 0 {
		s.log.Warn("admin: diff cut short", "users_not_read", n, "error", cancelled(ctx))
	}
	return results
}

// previewOne calls Syncer.Preview for user, turning a panic into an error
// for that user.
func (s *Server) previewOne(ctx context.Context, user string) (d UserDiff) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("admin: panic in roster diff", "user", user, "panic", p, "stack", string(debug.Stack()))
			d = UserDiff{User: user, Status: statusError, Error: fmt.Sprintf("diff %s: internal error: panic: %v", user, p)}
		}
	}()
	p, err := s.syncer.Preview(ctx, user)
	if err != nil {
		s.log.Warn("admin: roster diff failed", "user", user, "error", err)
		return UserDiff{User: user, Status: statusError, Error: err.Error(), Skipped: p.Skipped}
	}
	return toUserDiff(user, p)
}

// toUserDiff is the answer's form of a preview.
func toUserDiff(user string, p rostersync.Preview) UserDiff {
	return UserDiff{
		User: user, Status: statusOK,
		Add: diffChanges(p.Add), Update: diffChanges(p.Update), Remove: diffChanges(p.Remove),
		SubscriptionOnly: diffChanges(p.SubscriptionOnly), Skipped: p.Skipped,
	}
}

func diffChanges(cs []rostersync.Change) []DiffChange {
	if len(cs) == 0 {
		return nil
	}
	out := make([]DiffChange, len(cs))
	for i, c := range cs {
		out[i] = DiffChange{JID: c.JID, Fields: c.Fields}
		if c.Want.JID != "" {
			out[i].Want = diffItem(c.Want)
		}
		if c.Have.JID != "" {
			out[i].Have = diffItem(c.Have)
		}
	}
	return out
}

func diffItem(it roster.Item) *DiffItem {
	groups := it.Groups
	if groups == nil {
		groups = []string{}
	}
	return &DiffItem{Name: it.Name, Groups: groups, Subscription: it.SubscriptionOrNone()}
}

// Preview turns a UserDiff of status "ok" back into the preview it was
// made from (for clients that print it as roster-sidecar diff does).
func (d UserDiff) Preview() rostersync.Preview {
	p := rostersync.Preview{User: d.User, Skipped: d.Skipped}
	p.Add, p.Update, p.Remove = previewChanges(d.Add), previewChanges(d.Update), previewChanges(d.Remove)
	p.SubscriptionOnly = previewChanges(d.SubscriptionOnly)
	return p
}

func previewChanges(cs []DiffChange) []rostersync.Change {
	if len(cs) == 0 {
		return nil
	}
	out := make([]rostersync.Change, len(cs))
	for i, c := range cs {
		out[i] = rostersync.Change{JID: c.JID, Fields: c.Fields}
		if c.Want != nil {
			out[i].Want = roster.Item{JID: c.JID, Name: c.Want.Name, Groups: c.Want.Groups, Subscription: c.Want.Subscription}
		}
		if c.Have != nil {
			out[i].Have = roster.Item{JID: c.JID, Name: c.Have.Name, Groups: c.Have.Groups, Subscription: c.Have.Subscription}
		}
	}
	return out
}
