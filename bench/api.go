package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"roster-sidecar/e2e/harness"
)

// ejabberdAPIClient calls ejabberd's mod_http_api with keep-alive
// connections, one per call in flight.
type ejabberdAPIClient struct {
	url string
	hc  *http.Client
}

func newEjabberdAPI(srv *harness.Server) *ejabberdAPIClient {
	return &ejabberdAPIClient{url: srv.APIURL, hc: &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
	}}
}

// addRosterItem is the body of add_rosteritem (ejabberd >= 24.02: groups
// is a list).
type addRosterItem struct {
	LocalUser string   `json:"localuser"`
	LocalHost string   `json:"localhost"`
	User      string   `json:"user"`
	Host      string   `json:"host"`
	Nick      string   `json:"nick"`
	Groups    []string `json:"groups"`
	Subs      string   `json:"subs"`
}

// addRosterItems writes every item of s with one add_rosteritem call each,
// conc calls in flight, and returns how many succeeded.
func (a *ejabberdAPIClient) addRosterItems(ctx context.Context, s *benchSet, conc int) (int, error) {
	type job struct {
		owner string
		c     harness.Contact
	}
	jobs := make(chan job)
	var done atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range conc {
		g.Go(func() error {
			for j := range jobs {
				user, host, _ := cutJID(j.c.JID)
				if err := a.call(ctx, "add_rosteritem", addRosterItem{
					LocalUser: j.owner, LocalHost: harness.UserDomain, User: user, Host: host,
					Nick: j.c.Name, Groups: j.c.Groups, Subs: "both",
				}); err != nil {
					return err
				}
				done.Add(1)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		for i, u := range s.users {
			for _, c := range s.rosters[i] {
				select {
				case jobs <- job{owner: u, c: c}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	err := g.Wait()
	return int(done.Load()), err
}

func (a *ejabberdAPIClient) call(ctx context.Context, command string, args any) error {
	body, err := json.Marshal(args)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+command, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Host = harness.UserDomain // the virtual host, as ejabberdAPI (e2e/harness) names it
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", command, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(bytes.TrimSpace(b), []byte("0")) {
		return fmt.Errorf("%s %s: %s: %s", command, body, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// cutJID splits a bare JID into its local part and domain.
func cutJID(j string) (local, domain string, ok bool) {
	at := bytes.IndexByte([]byte(j), '@')
	if at < 0 {
		return "", j, false
	}
	return j[:at], j[at+1:], true
}
