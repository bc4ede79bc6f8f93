package admin

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
)

// ReadyResponse is the body of GET /readyz.
type ReadyResponse struct {
	// Status is "ok" when ready, else "error".
	Status string `json:"status"`
	// Message says why the server is not ready; omitted when it is.
	Message string `json:"message,omitempty"`
	// Domains lists every user domain served, the default first, and
	// whether its rosters can be synced now; none on a standby.
	Domains []DomainStatus `json:"domains,omitempty"`
	// Role is RoleLeader or RoleStandby under leader election; omitted
	// without it.
	Role string `json:"role,omitempty"`
	// Leader is the identity of the lease holder, and LeaderURL the admin
	// URL it advertises, as this instance last saw them; omitted when not
	// known or without leader election.
	Leader    string `json:"leader,omitempty"`
	LeaderURL string `json:"leader_url,omitempty"`
}

// DomainStatus is the readiness of one user domain.
type DomainStatus struct {
	// Domain is the domain, normalised.
	Domain string `json:"domain"`
	// Default is true for the default domain, whose users are named
	// without a domain: /readyz follows it.
	Default bool `json:"default"`
	// Ready is true when the domain's rosters can be synced now.
	Ready bool `json:"ready"`
	// Error says why not; omitted when ready.
	Error string `json:"error,omitempty"`
}

// servedDomains returns the normalised domains of cfg, the default first,
// or an error when one is not a valid domain.
func servedDomains(cfg Config) ([]string, error) {
	var domains []string
	for _, d := range append([]string{cfg.UserDomain}, cfg.UserDomains...) {
		j, err := jid.New("", d, "")
		if err != nil {
			return nil, fmt.Errorf("user domain %q is not valid: %w", d, err)
		}
		if !slices.Contains(domains, j.Domainpart()) {
			domains = append(domains, j.Domainpart())
		}
	}
	return domains, nil
}

// username is a validated username of a request.
type username struct {
	// name is how requests reach the Syncer and results name the user:
	// the normalised localpart on the default domain, else the bare JID
	// (localpart@domain, both normalised).
	name string
	// local and domain are the user's normalised localpart and domain.
	local, domain string
	// err, when not nil, is why the user cannot be synced here at all:
	// its domain is not served (rosterhttp.ParseUser's error). In a bulk
	// refresh or a push that user fails alone (notServedError).
	err error
}

// parseUsername validates a username of a request (rosterhttp.ParseUser
// with the domains served). A well-formed name on a domain not served is
// no error: it comes back with its own err set.
func (s *Server) parseUsername(n string) (username, error) {
	local, domain, err := rosterhttp.ParseUser(n, s.domains)
	u := username{name: local, local: local, domain: domain}
	if domain != s.domains[0] {
		u.name = local + "@" + domain
	}
	switch {
	case errors.Is(err, rosterhttp.ErrDomainNotServed):
		u.err = err
	case err != nil:
		return username{}, err
	}
	return u, nil
}

// notServedError is the per-user error of a user whose domain is not
// served.
func (s *Server) notServedError(u username) error {
	return rosterhttp.NotServed(fmt.Sprintf("user %s: domain %s is not served here (user domains: %s)",
		u.name, u.domain, strings.Join(s.domains, ", ")))
}
