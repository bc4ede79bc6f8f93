package admin

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roster-sidecar/rostersync"
)

// domainSyncer is a fakeSyncer that reports its domains' readiness.
type domainSyncer struct {
	*fakeSyncer
	domains []rostersync.DomainReady
}

func (d domainSyncer) ReadyDomains() []rostersync.DomainReady { return d.domains }

var errOtherNotGranted = errors.New("roster privilege not granted: the server sent no privilege for nopriv.test (configure mod_privilege for this component)")

// A bulk refresh names users of the default domain by localpart and the
// others by bare JID; users of a domain not served, or not ready, fail alone.
func TestRefreshSeveralDomains(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"bob@nopriv.test": {Err: errOtherNotGranted},
	}}
	srv := newServer(t, Config{UserDomains: []string{"Other.Test", "nopriv.test"}}, f)
	r := refresh(t, srv, `["john", "john@other.test", "JOHN@Example.test", "mary@third.test", "bob@nopriv.test", "John@OTHER.test."]`)
	requireJSON(t, r, http.StatusOK, `{"status":"ok","message":"roster update complete","updated":2,"errors":2,"results":[
		{"user":"john","status":"ok","added":1,"updated":0,"removed":0},
		{"user":"john@other.test","status":"ok","added":1,"updated":0,"removed":0},
		{"user":"mary@third.test","status":"error","error":"user mary@third.test: domain third.test is not served here (user domains: example.test, other.test, nopriv.test)","added":0,"updated":0,"removed":0},
		{"user":"bob@nopriv.test","status":"error","error":"`+errOtherNotGranted.Error()+`","added":0,"updated":0,"removed":0}]}`)
	calls, _, _, _ := f.snapshot()
	slices.Sort(calls)
	assert.Equal(t, []string{"bob@nopriv.test", "john", "john@other.test"}, calls, "the user of a domain not served is not synced")

	// A request whose every user is of a domain not served fails as a whole
	// only in its status.
	r = refresh(t, srv, `["mary@third.test"]`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Contains(t, r.body, `"status":"error","message":"roster update failed for all users"`)
}

func TestRefreshUserSeveralDomains(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{UserDomains: []string{"other.test"}}, f)
	requireJSON(t, do(t, srv, http.MethodPost, "/roster_admin/refresh/John@Other.test", nil), http.StatusOK,
		`{"status":"ok","message":"roster update complete","user":"john@other.test","added":1,"updated":0,"removed":0}`)
	requireJSON(t, do(t, srv, http.MethodPost, "/roster_admin/refresh/john@example.test", nil), http.StatusOK,
		`{"status":"ok","message":"roster update complete","user":"john","added":1,"updated":0,"removed":0}`)
	requireError(t, do(t, srv, http.MethodGet, "/roster_admin/refresh/john@third.test", nil), http.StatusBadRequest,
		`invalid username "john@third.test": its domain is not one of the domains served here (example.test, other.test)`)
	calls, _, _, _ := f.snapshot()
	assert.Equal(t, []string{"john@other.test", "john"}, calls)
}

func TestPushSeveralDomains(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{UserDomains: []string{"other.test"}}, f)
	r := pushBody(t, srv, `{"john@other.test": {"JOHN@other.test": {}, "anna@example.test": {}}, "x@third.test": {}, "john": {"john@other.test": {}}}`)
	requireJSON(t, r, http.StatusOK, `{"status":"ok","message":"roster update complete","updated":2,"errors":1,"results":[
		{"user":"john@other.test","status":"ok","added":1,"updated":0,"removed":0,"skipped":[{"jid":"JOHN@other.test","reason":"the user's own JID"}]},
		{"user":"x@third.test","status":"error","error":"user x@third.test: domain third.test is not served here (user domains: example.test, other.test)","added":0,"updated":0,"removed":0},
		{"user":"john","status":"ok","added":1,"updated":0,"removed":0}]}`)
	pushed := f.pushes()
	require.Len(t, pushed, 2)
	assert.Equal(t, "anna@example.test", pushed["john@other.test"].Items[0].JID, "parsed as the roster of john@other.test")
	assert.Equal(t, "john@other.test", pushed["john"].Items[0].JID, "parsed as the roster of john@example.test")

	requireError(t, pushBody(t, srv, `{"john@other.test": {}, "JOHN@Other.Test": {}}`), http.StatusBadRequest,
		`user "john@other.test" is given twice (as "john@other.test" and "JOHN@Other.Test")`)
	requireError(t, pushBody(t, srv, `{"john": {}, "john@example.test": {}}`), http.StatusBadRequest,
		`user "john" is given twice`)
}

// /readyz follows the default domain and lists every domain.
func TestReadyzDomains(t *testing.T) {
	domains := []rostersync.DomainReady{
		{Domain: "example.test", Default: true},
		{Domain: "nopriv.test", Err: errOtherNotGranted},
	}
	srv := newServer(t, Config{UserDomains: []string{"nopriv.test"}}, domainSyncer{&fakeSyncer{}, domains})
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusOK, `{"status":"ok","domains":[
		{"domain":"example.test","default":true,"ready":true},
		{"domain":"nopriv.test","default":false,"ready":false,"error":"`+errOtherNotGranted.Error()+`"}]}`)

	notReady := errors.New("not ready for example.test, nopriv.test: roster privilege not granted for example.test; " + errOtherNotGranted.Error())
	domains[0].Err = errors.New("roster privilege not granted for example.test")
	srv = newServer(t, Config{UserDomains: []string{"nopriv.test"}}, domainSyncer{&fakeSyncer{readyErr: notReady}, domains})
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusServiceUnavailable, `{"status":"error","message":"`+notReady.Error()+`","domains":[
		{"domain":"example.test","default":true,"ready":false,"error":"roster privilege not granted for example.test"},
		{"domain":"nopriv.test","default":false,"ready":false,"error":"`+errOtherNotGranted.Error()+`"}]}`)
}

func TestNewUserDomains(t *testing.T) {
	_, err := New(Config{UserDomain: testDomain, UserDomains: []string{"bad domain@"}}, &fakeSyncer{}, discardLogger())
	require.ErrorContains(t, err, `user domain "bad domain@" is not valid`)
	_, err = New(Config{UserDomain: testDomain, UserDomains: []string{testDomain, "EXAMPLE.test"}}, &fakeSyncer{}, discardLogger())
	require.NoError(t, err)
	// A real Syncer reports its domains.
	var _ DomainReporter = (*rostersync.Syncer)(nil)
}
