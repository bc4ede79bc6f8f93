package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// Values of the "status" and "message" fields.
const (
	statusOK         = "ok"
	statusError      = "error"
	messageComplete  = "roster update complete"
	messageAllFailed = "roster update failed for all users"
)

// StatusResponse is the body of GET /healthz and of a ready GET /readyz.
type StatusResponse struct {
	// Status is "ok".
	Status string `json:"status"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	// Status is "error".
	Status string `json:"status"`
	// Message says what went wrong.
	Message string `json:"message"`
}

// RefreshResponse is the body of POST /roster_admin/refresh, both of the 200
// answer and of the 503 answer (which has no Results).
type RefreshResponse struct {
	// Status is "ok" unless every user failed (or the server is not ready),
	// then "error".
	Status string `json:"status"`
	// Message is "roster update complete", "roster update failed for all
	// users", or why the server is not ready.
	Message string `json:"message"`
	// Updated counts the rosters brought in line with the backend.
	Updated int `json:"updated"`
	// Errors counts the rosters that failed.
	Errors int `json:"errors"`
	// Results holds one entry per distinct user, in the order of first
	// appearance in the request; omitted in the 503 answer.
	Results []UserResult `json:"results,omitzero"`
}

// UserResult is the outcome of refreshing one user's roster.
type UserResult struct {
	// User is the normalised localpart for a user of the default domain,
	// else the normalised bare JID (localpart@domain).
	User string `json:"user"`
	// Status is "ok" or "error".
	Status string `json:"status"`
	// Error says why it failed; empty when Status is "ok".
	Error string `json:"error,omitempty"`
	// Added, Updated and Removed count the roster items changed.
	Added   int `json:"added"`
	Updated int `json:"updated"`
	Removed int `json:"removed"`
	// Skipped lists backend contacts that were not applied.
	Skipped []rosterhttp.Skipped `json:"skipped,omitempty"`
}

// UserResponse is the 200 body of GET or POST /roster_admin/refresh/:user.
type UserResponse struct {
	// Status is "ok".
	Status string `json:"status"`
	// Message is "roster update complete".
	Message string `json:"message"`
	// User names the user as UserResult.User does.
	User string `json:"user"`
	// Added, Updated and Removed count the roster items changed.
	Added   int `json:"added"`
	Updated int `json:"updated"`
	Removed int `json:"removed"`
	// Skipped lists backend contacts that were not applied.
	Skipped []rosterhttp.Skipped `json:"skipped,omitempty"`
}

// handleRefresh serves POST /roster_admin/refresh. The body must be a JSON
// array of strings; it is validated completely (413 when over MaxBodyBytes,
// 400 for anything malformed, for more than MaxUsers names or for any invalid
// username) before anything is synced. An empty array answers 200 at once.
// When the Syncer is not ready the answer is 503 with "errors" counting the
// distinct users. Otherwise every distinct user is synced, at most
// Concurrency at once for this request, within RequestTimeout, and the
// answer is 200 with per-user results, even when users failed; a user of a
// domain not served fails alone, and so does, in its sync, a user of a
// domain served but not ready.
func (s *Server) handleRefresh(c echo.Context) error {
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
		s.logRefresh(kindRefresh, start, nil)
		return c.JSON(http.StatusOK, RefreshResponse{Status: statusOK, Message: messageComplete, Results: []UserResult{}})
	}
	if err := s.ready(c); err != nil {
		s.log.Warn("admin: refresh refused, not ready", "users", len(users), "reason", err)
		return c.JSON(http.StatusServiceUnavailable, RefreshResponse{
			Status: statusError, Message: err.Error(), Errors: len(users),
		})
	}
	ctx, cancel := s.refreshContext(c.Request().Context())
	defer cancel()
	resp := summarise(s.syncAll(ctx, users))
	s.logRefresh(kindRefresh, start, resp.Results)
	return c.JSON(http.StatusOK, resp)
}

// notServed sets the failed results of the users whose domain is not
// served, and returns the names of all.
func (s *Server) notServed(users []username, results []UserResult) []string {
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.name
		if u.err != nil {
			s.log.Warn("admin: user of a domain not served", "user", u.name)
			results[i] = failed(u.name, s.notServedError(u))
		}
	}
	return names
}

// handleRefreshUser serves GET and POST /roster_admin/refresh/:user. The
// username is the percent-decoded path segment. Answers: 200 UserResponse on
// success; 400 for an invalid username, or one of a domain not served; 503
// when the Syncer is not ready;
// 502 when the sync failed (backend or XMPP error), 504 when it was cut short
// by RequestTimeout (or the client going away), each with the reason as
// message.
func (s *Server) handleRefreshUser(c echo.Context) error {
	start := time.Now()
	name, err := pathUser(c)
	if err != nil {
		return s.reject(badRequest(err))
	}
	u, err := s.parseUsername(name)
	if err == nil {
		err = u.err
	}
	if err != nil {
		return s.reject(badRequest(err))
	}
	if err := s.ready(c); err != nil {
		s.log.Warn("admin: refresh refused, not ready", "users", 1, "reason", err)
		return c.JSON(http.StatusServiceUnavailable, ErrorResponse{Status: statusError, Message: err.Error()})
	}
	ctx, cancel := s.refreshContext(c.Request().Context())
	defer cancel()
	res := s.syncAll(ctx, []username{u})[0]
	s.logRefresh(kindRefresh, start, []UserResult{res})
	if res.Status != statusOK {
		code := http.StatusBadGateway
		if ctx.Err() != nil {
			code = http.StatusGatewayTimeout
		}
		return c.JSON(code, ErrorResponse{Status: statusError, Message: res.Error})
	}
	return c.JSON(http.StatusOK, UserResponse{
		Status: statusOK, Message: messageComplete, User: res.User,
		Added: res.Added, Updated: res.Updated, Removed: res.Removed, Skipped: res.Skipped,
	})
}

// Kinds of requests that sync rosters, for logRefresh.
const (
	kindRefresh = "refresh"
	kindPush    = "push"
)

// logRefresh writes the one Info line of a refresh (or push) request that
// was synced: users, rosters updated and failed, the duration, then the
// roster items changed and the contacts skipped. Per-user detail is at Debug
// (component) and Warn for failures.
func (s *Server) logRefresh(kind string, start time.Time, results []UserResult) {
	var updated, errs, added, changed, removed, skipped int
	for _, r := range results {
		if r.Status == statusOK {
			updated++
		} else {
			errs++
		}
		added, changed, removed, skipped = added+r.Added, changed+r.Updated, removed+r.Removed, skipped+len(r.Skipped)
	}
	s.log.Info("admin: roster "+kind, "users", len(results), "updated", updated, "errors", errs,
		"duration", time.Since(start), "items_added", added, "items_updated", changed, "items_removed", removed,
		"skipped", skipped)
}

// reject logs a refused request and returns its error for the error
// handler.
func (s *Server) reject(he *echo.HTTPError) error {
	s.log.Info("admin: refresh request rejected", "code", he.Code, "reason", he.Message)
	return he
}

func badRequest(err error) *echo.HTTPError {
	return echo.NewHTTPError(http.StatusBadRequest, err.Error()).SetInternal(err)
}

// pathUser returns the :user path parameter percent-decoded. Echo matches
// routes on the raw path when the URL has one (it is set only when the
// client's encoding differs from Go's default, e.g. "%2F" or lowercase hex),
// and then leaves parameters encoded; otherwise the parameter comes from the
// already decoded path and must not be decoded twice. net/http refuses a
// request line with an invalid escape, so the error is for other callers of
// the handler; its text quotes only the bad escape, never the whole name.
func pathUser(c echo.Context) (string, error) {
	v := c.Param("user")
	if c.Request().URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", fmt.Errorf("invalid percent-encoding in username: %w", err)
	}
	return u, nil
}

// readUsernames reads the body of a bulk refresh request and decodes it.
func (s *Server) readUsernames(r *http.Request) ([]string, *echo.HTTPError) {
	body, herr := s.readBody(r)
	if herr != nil {
		return nil, herr
	}
	names, err := decodeUsernames(body, s.cfg.MaxUsers)
	if err != nil {
		return nil, badRequest(err)
	}
	return names, nil
}

// readBody reads a request body of at most MaxBodyBytes: a larger one is a
// 413 error, whether or not it announces its length.
func (s *Server) readBody(r *http.Request) ([]byte, *echo.HTTPError) {
	limit := s.cfg.MaxBodyBytes
	tooLarge := echo.NewHTTPError(http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body larger than %d bytes", limit))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, badRequest(fmt.Errorf("read request body: %w", err))
	}
	if int64(len(body)) > limit {
		return nil, tooLarge
	}
	return body, nil
}

// decodeOne returns the one JSON value body holds (surrounding white space
// allowed), which must be of kind open ('[' or '{', named kind); what is a
// JSON <kind> of <what> the error texts say.
func decodeOne(body []byte, open byte, kind, what string) (json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("request body is empty: expected a JSON %s", what)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("request body is not valid JSON: %w", err)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return nil, fmt.Errorf("request body has data after the JSON %s: expected exactly one JSON %s", kind, what)
	}
	if raw[0] != open {
		return nil, fmt.Errorf("request body must be a JSON %s, got %s", what, jsonKind(raw))
	}
	return raw, nil
}

// decodeUsernames decodes body, which must hold exactly one JSON array of at
// most maxUsers strings (surrounding white space allowed).
func decodeUsernames(body []byte, maxUsers int) ([]string, error) {
	raw, err := decodeOne(body, '[', "array", "array of usernames")
	if err != nil {
		return nil, err
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("request body is not valid JSON: %w", err)
	}
	if len(elems) > maxUsers {
		return nil, fmt.Errorf("too many usernames in one request: %d, the limit is %d", len(elems), maxUsers)
	}
	names := make([]string, len(elems))
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		if e[0] != '"' {
			return nil, fmt.Errorf("element %d of the array is %s, not a string: usernames must be strings", i, jsonKind(e))
		}
		if !utf8.Valid(e) {
			return nil, fmt.Errorf("element %d of the array is not valid UTF-8", i)
		}
		if err := json.Unmarshal(e, &names[i]); err != nil {
			return nil, fmt.Errorf("element %d of the array: %w", i, err)
		}
	}
	return names, nil
}

// jsonKind names the kind of a valid JSON value with its article, for
// error messages: "an array", "a string", "null".
func jsonKind(v []byte) string {
	switch k := rosterhttp.JSONKind(v); k {
	case "null":
		return k
	case "object", "array":
		return "an " + k
	default:
		return "a " + k
	}
}

// normalise validates all names and returns the distinct users in the
// order of first appearance.
func (s *Server) normalise(names []string) ([]username, error) {
	seen := make(map[string]struct{}, len(names))
	users := make([]username, 0, len(names))
	for _, n := range names {
		u, err := s.parseUsername(n)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[u.name]; dup {
			continue
		}
		seen[u.name] = struct{}{}
		users = append(users, u)
	}
	return users, nil
}

// refreshContext derives the context of one refresh request: it ends with
// the request, after RequestTimeout, or, as every request served by Run
// does, when Run's grace period runs out (cause errShuttingDown).
func (s *Server) refreshContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(parent, s.cfg.RequestTimeout,
		fmt.Errorf("refresh took longer than the request timeout of %s", s.cfg.RequestTimeout))
}

// syncAll syncs users, at most Concurrency at once, and returns their
// results in order (users of a domain not served fail without a sync).
// Users still waiting for a slot when ctx ends fail with "request
// cancelled". It returns when every started Sync has returned.
func (s *Server) syncAll(ctx context.Context, users []username) []UserResult {
	results := make([]UserResult, len(users))
	names := s.notServed(users, results)
	s.runEach(ctx, kindRefresh, names, results, func(ctx context.Context, i int) rostersync.Result {
		return s.syncer.Sync(ctx, names[i])
	})
	return results
}

// runEach calls sync(ctx, i) for each user i whose result is not set yet
// (Status empty), at most Concurrency at once, and sets the results. Users
// still waiting for a slot when ctx ends fail with "request cancelled". It
// returns when every started call has returned.
func (s *Server) runEach(ctx context.Context, kind string, users []string, results []UserResult,
	sync func(ctx context.Context, i int) rostersync.Result) {
	var notSynced atomic.Int64
	var g errgroup.Group
	g.SetLimit(s.cfg.Concurrency)
	for i, user := range users {
		if results[i].Status != "" {
			continue
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				notSynced.Add(1)
				results[i] = failed(user, cancelled(ctx))
				return nil
			}
			results[i] = toUserResult(user, s.syncOne(ctx, kind, user, func(ctx context.Context) rostersync.Result {
				return sync(ctx, i)
			}))
			return nil
		})
	}
	_ = g.Wait() // the goroutines report in results, never an error
	if n := notSynced.Load(); n > 0 {
		s.log.Warn("admin: "+kind+" cut short", "users_not_synced", n, "error", cancelled(ctx))
	}
}

// cancelled is the error of a user not synced because ctx ended.
func cancelled(ctx context.Context) error {
	return fmt.Errorf("request cancelled: %w", context.Cause(ctx))
}

// syncOne calls sync (Syncer.Sync or Push) for user, turning a panic into
// an error for that user so that one bad roster cannot take the process
// down.
func (s *Server) syncOne(ctx context.Context, kind, user string, sync func(context.Context) rostersync.Result) (res rostersync.Result) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("admin: panic in roster sync", "user", user, "panic", p, "stack", string(debug.Stack()))
			res = rostersync.Result{User: user, Err: fmt.Errorf("sync %s: internal error: panic: %v", user, p)}
		}
		if res.Err != nil {
			s.log.Warn("admin: roster "+kind+" failed", "user", user, "error", res.Err)
		}
	}()
	return sync(ctx)
}

func toUserResult(user string, res rostersync.Result) UserResult {
	r := UserResult{
		User: user, Status: statusOK,
		Added: res.Added, Updated: res.Updated, Removed: res.Removed, Skipped: res.Skipped,
	}
	if res.Err != nil {
		r.Status, r.Error = statusError, res.Err.Error()
	}
	return r
}

func failed(user string, err error) UserResult {
	return UserResult{User: user, Status: statusError, Error: err.Error()}
}

// summarise builds the 200 answer of a bulk refresh.
func summarise(results []UserResult) RefreshResponse {
	resp := RefreshResponse{Status: statusOK, Message: messageComplete, Results: results}
	for _, r := range results {
		if r.Status == statusOK {
			resp.Updated++
		} else {
			resp.Errors++
		}
	}
	if resp.Errors == len(results) {
		resp.Status, resp.Message = statusError, messageAllFailed
	}
	return resp
}
