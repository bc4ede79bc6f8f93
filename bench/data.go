package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"roster-sidecar/e2e/harness"
)

// benchSet is a set of users with their desired rosters. Contact j of user i
// is user i+1+j of the same set (wrapping), so contacts are real local users.
type benchSet struct {
	prefix  string
	users   []string
	rosters [][]harness.Contact
}

var benchGroups = []string{"Friends", "Work", "Family", "Team Blue", "Team Red"}

func newBenchSet(prefix string, n, k int) *benchSet {
	s := &benchSet{prefix: prefix, users: make([]string, n), rosters: make([][]harness.Contact, n)}
	for i := range n {
		s.users[i] = prefix + strconv.Itoa(i)
	}
	for i := range n {
		cs := make([]harness.Contact, k)
		for j := range k {
			var local string
			if k < n {
				local = s.users[(i+1+j)%n]
			} else { // more contacts than users: invent them
				local = prefix + "x" + strconv.Itoa(j)
			}
			cs[j] = harness.Contact{JID: local + "@" + harness.UserDomain, Name: "User " + local, Groups: []string{benchGroups[(i+j)%len(benchGroups)]}}
		}
		s.rosters[i] = cs
	}
	return s
}

// changeShare is how many contacts per user the update renames, removes
// and adds: 10% each, at least one when there are at least 3 contacts.
func changeShare(k int) int {
	if k < 3 {
		return 0
	}
	return max(1, k/10)
}

// updatePlan is the change of one user's roster made by mutate, in the
// order the sidecar sends it (removals, updates, additions).
type updatePlan struct {
	removed, renamed, added []harness.Contact
}

// mutate renames the first r contacts of every user, removes the next r and
// adds r new ones, and returns what changed per user.
func (s *benchSet) mutate() []updatePlan {
	plans := make([]updatePlan, len(s.users))
	for i, cs := range s.rosters {
		r := changeShare(len(cs))
		if r == 0 {
			continue
		}
		var p updatePlan
		next := make([]harness.Contact, 0, len(cs))
		for j, c := range cs {
			switch {
			case j < r:
				c.Name += " (renamed)"
				p.renamed = append(p.renamed, c)
				next = append(next, c)
			case j < 2*r:
				p.removed = append(p.removed, c)
			default:
				next = append(next, c)
			}
		}
		for m := range r {
			local := s.prefix + "n" + strconv.Itoa(i) + "_" + strconv.Itoa(m)
			c := harness.Contact{JID: local + "@" + harness.UserDomain, Name: "New " + local, Groups: []string{benchGroups[m%len(benchGroups)]}}
			p.added = append(p.added, c)
			next = append(next, c)
		}
		s.rosters[i] = next
		plans[i] = p
	}
	return plans
}

// items is the number of roster items of the set.
func (s *benchSet) items() int {
	n := 0
	for _, cs := range s.rosters {
		n += len(cs)
	}
	return n
}

// serve scripts the backend with the set's current rosters, pre-encoded.
func (s *benchSet) serve(b *harness.Backend) {
	for i, u := range s.users {
		b.Set(u, harness.Reply{Body: harness.EncodeRoster(s.rosters[i])})
	}
}

// serveConditional is serve with validators: each answer carries an ETag
// (a hash of its body) and Last-Modified, and a request that has them is
// answered 304 Not Modified.
func (s *benchSet) serveConditional(b *harness.Backend) {
	now := time.Now().Truncate(time.Second)
	for i, u := range s.users {
		body := harness.EncodeRoster(s.rosters[i])
		sum := sha256.Sum256([]byte(body))
		b.Set(u, harness.Reply{Body: body, ETag: `"` + hex.EncodeToString(sum[:12]) + `"`, LastModified: now})
	}
}

// blastReadFirst makes populateStanzas read each user's roster (GET)
// before writing it, as the sidecar's diff does.
var blastReadFirst bool

// populateStanzas are the SETs that write the whole set from empty.
func (s *benchSet) populateStanzas(from string, ids *int) [][]byte {
	var out [][]byte
	for i, u := range s.users {
		owner := u + "@" + harness.UserDomain
		if blastReadFirst {
			*ids++
			out = append(out, getStanza(blastID(*ids), from, owner))
		}
		for _, c := range s.rosters[i] {
			*ids++
			out = append(out, setStanza(blastID(*ids), from, owner, c, false))
		}
	}
	return out
}

// getStanzas are one roster GET per user.
func (s *benchSet) getStanzas(from string, ids *int) [][]byte {
	out := make([][]byte, 0, len(s.users))
	for _, u := range s.users {
		*ids++
		out = append(out, getStanza(blastID(*ids), from, u+"@"+harness.UserDomain))
	}
	return out
}

// interleave reorders stanzas written user by user (each user's items
// together) so that groups of g users take turns item by item, as g
// concurrent per-user syncs would send them.
func interleave(stanzas [][]byte, perUser, g int) [][]byte {
	if g <= 1 || perUser <= 0 {
		return stanzas
	}
	out := make([][]byte, 0, len(stanzas))
	for base := 0; base < len(stanzas); base += g * perUser {
		end := min(len(stanzas), base+g*perUser)
		for j := range perUser {
			for u := base; u+j < end; u += perUser {
				out = append(out, stanzas[u+j])
			}
		}
	}
	return out
}

// updateStanzas are the SETs of the plans.
func (s *benchSet) updateStanzas(plans []updatePlan, from string, ids *int) [][]byte {
	var out [][]byte
	for i, u := range s.users {
		owner := u + "@" + harness.UserDomain
		add := func(cs []harness.Contact, remove bool) {
			for _, c := range cs {
				*ids++
				out = append(out, setStanza(blastID(*ids), from, owner, c, remove))
			}
		}
		add(plans[i].removed, true)
		add(plans[i].renamed, false)
		add(plans[i].added, false)
	}
	return out
}

// refresher calls the sidecar's admin API like a backend would.
type refresher struct {
	base, token string
	hc          *http.Client
}

func newRefresher(base, token string) *refresher {
	return &refresher{base: base, token: token, hc: &http.Client{
		Timeout:   30 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
	}}
}

// refreshTotals sums the answers of refresh requests.
type refreshTotals struct {
	Requests, OK, Errors    int
	Added, Updated, Removed int
	FirstError              string
	MaxRequest, MinRequest  time.Duration
}

func (t *refreshTotals) add(r *harness.RefreshResponse, d time.Duration) {
	t.Requests++
	t.OK += r.Updated
	t.Errors += r.Errors
	for _, res := range r.Results {
		t.Added += res.Added
		t.Updated += res.Updated
		t.Removed += res.Removed
		if res.Status != "ok" && t.FirstError == "" {
			t.FirstError = res.User + ": " + res.Error
		}
	}
	t.MaxRequest = max(t.MaxRequest, d)
	if t.MinRequest == 0 || d < t.MinRequest {
		t.MinRequest = d
	}
}

// bulk posts one refresh request for users.
func (r *refresher) bulk(ctx context.Context, users []string) (*harness.RefreshResponse, error) {
	body, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/roster_admin/refresh", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("refresh of %d users: %w", len(users), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("refresh of %d users: %s: %s", len(users), resp.Status, b)
	}
	var out harness.RefreshResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("refresh of %d users: decoding answer: %w", len(users), err)
	}
	return &out, nil
}

// all refreshes users in requests of batch users, parallel requests at once.
func (r *refresher) all(ctx context.Context, users []string, batch, parallel int) (*refreshTotals, error) {
	tot := &refreshTotals{}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, parallel))
	for len(users) > 0 {
		n := min(max(1, batch), len(users))
		chunk := users[:n]
		users = users[n:]
		g.Go(func() error {
			start := time.Now()
			resp, err := r.bulk(ctx, chunk)
			if err != nil {
				return err
			}
			mu.Lock()
			tot.add(resp, time.Since(start))
			mu.Unlock()
			return nil
		})
	}
	return tot, g.Wait()
}

// one refreshes a single user through /roster_admin/refresh/{user}.
func (r *refresher) one(ctx context.Context, user string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/roster_admin/refresh/"+url.PathEscape(user), nil)
	if err != nil {
		return err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("refresh %s: %s: %s", user, resp.Status, b)
	}
	return nil
}
