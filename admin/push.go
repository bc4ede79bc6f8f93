package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// pushEntry is one user's part of a push body: the username as sent and
// the roster, a JSON value as sent.
type pushEntry struct {
	name   string
	roster json.RawMessage
}

// handlePush serves POST /roster_admin/push. The body is a JSON object
// whose keys are usernames and whose values are the users' rosters in the
// backend's format (PROTOCOL.md section 1). The object is validated before
// anything is synced (413 when over MaxBodyBytes; 400 for anything
// malformed, more than MaxUsers users, an invalid username or a user given
// twice); an empty object answers 200 at once. When the Syncer is not ready
// the answer is 503 with "errors" counting the users. Otherwise each user's
// roster is parsed with RosterLimits (a roster that is not a JSON object,
// is over MaxRosterBytes or lists too many contacts fails that user alone,
// as does a user of a domain not served) and applied through Syncer.Push,
// with no fetch from the backend, as the bulk refresh syncs: the answer is
// 200 with per-user results, in the order of the object's keys.
func (s *Server) handlePush(c echo.Context) error {
	start := time.Now()
	body, herr := s.readBody(c.Request())
	if herr != nil {
		return s.reject(herr)
	}
	entries, err := decodePush(body, s.cfg.MaxUsers)
	if err != nil {
		return s.reject(badRequest(err))
	}
	users, err := s.pushUsers(entries)
	if err != nil {
		return s.reject(badRequest(err))
	}
	if len(users) == 0 {
		s.logRefresh(kindPush, start, nil)
		return c.JSON(http.StatusOK, RefreshResponse{Status: statusOK, Message: messageComplete, Results: []UserResult{}})
	}
	if err := s.ready(c); err != nil {
		s.log.Warn("admin: push refused, not ready", "users", len(users), "reason", err)
		return c.JSON(http.StatusServiceUnavailable, RefreshResponse{
			Status: statusError, Message: err.Error(), Errors: len(users),
		})
	}
	results := make([]UserResult, len(users))
	names := s.notServed(users, results)
	rosters := make([]rosterhttp.Roster, len(users))
	for i, e := range entries {
		if results[i].Status != "" {
			continue
		}
		if rosters[i], err = s.parsePushed(users[i], e.roster); err != nil {
			s.log.Warn("admin: roster push failed", "user", names[i], "error", err)
			results[i] = failed(names[i], err)
		}
	}
	ctx, cancel := s.refreshContext(c.Request().Context())
	defer cancel()
	s.runEach(ctx, kindPush, names, results, func(ctx context.Context, i int) rostersync.Result {
		return s.syncer.Push(ctx, names[i], rosters[i])
	})
	resp := summarise(results)
	s.logRefresh(kindPush, start, resp.Results)
	return c.JSON(http.StatusOK, resp)
}

// decodePush decodes body, which must hold exactly one JSON object
// (surrounding white space allowed) of at most maxUsers keys, into its
// entries in the order of the keys.
func decodePush(body []byte, maxUsers int) ([]pushEntry, error) {
	raw, err := decodeOne(body, '{', "object", "object of rosters keyed by username")
	if err != nil {
		return nil, err
	}
	// raw is one valid JSON object: walk its keys in order.
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("request body is not valid JSON: %w", err)
	}
	var entries []pushEntry
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("request body is not valid JSON: %w", err)
		}
		name, _ := tok.(string)
		var roster json.RawMessage
		if err := dec.Decode(&roster); err != nil {
			return nil, fmt.Errorf("request body is not valid JSON: %w", err)
		}
		entries = append(entries, pushEntry{name: name, roster: roster})
	}
	if len(entries) > maxUsers {
		return nil, fmt.Errorf("too many users in one push: %d, the limit is %d", len(entries), maxUsers)
	}
	return entries, nil
}

// pushUsers validates the usernames of a push and returns the users, in
// order. A user given twice, even spelt differently, is an error: which of
// the two rosters would be meant is unknown.
func (s *Server) pushUsers(entries []pushEntry) ([]username, error) {
	users := make([]username, len(entries))
	seen := make(map[string]string, len(entries))
	for i, e := range entries {
		u, err := s.parseUsername(e.name)
		if err != nil {
			return nil, err
		}
		if first, dup := seen[u.name]; dup {
			if first == e.name {
				return nil, fmt.Errorf("user %q is given twice: push one roster per user", u.name)
			}
			return nil, fmt.Errorf("user %q is given twice (as %q and %q): push one roster per user", u.name, first, e.name)
		}
		seen[u.name] = e.name
		users[i] = u
	}
	return users, nil
}

// parsePushed validates one user's pushed roster as a backend answer for
// that user (rosterhttp.Limits.Parse with RosterLimits), over MaxRosterBytes
// as sent it fails.
func (s *Server) parsePushed(u username, raw json.RawMessage) (rosterhttp.Roster, error) {
	owner, err := jid.New(u.local, u.domain, "")
	if err != nil {
		return rosterhttp.Roster{}, fmt.Errorf("user %q: %w", u.name, err)
	}
	if n := int64(len(raw)); n > s.cfg.MaxRosterBytes {
		return rosterhttp.Roster{}, fmt.Errorf("pushed roster of %s is %d bytes, more than the limit of %d", owner, n, s.cfg.MaxRosterBytes)
	}
	r, err := s.cfg.RosterLimits.Parse(raw, owner)
	if err == nil {
		return r, nil
	}
	var notRoster *rosterhttp.NotRosterError
	var tooMany *rosterhttp.TooManyContactsError
	switch {
	case errors.As(err, &notRoster):
		return rosterhttp.Roster{}, fmt.Errorf("pushed roster of %s is %s", owner, notRoster.Reason)
	case errors.As(err, &tooMany):
		return rosterhttp.Roster{}, fmt.Errorf("pushed roster of %s lists %d contacts, more than the limit of %d", owner, tooMany.Count, tooMany.Limit)
	}
	return rosterhttp.Roster{}, fmt.Errorf("pushed roster of %s: %w", owner, err)
}
