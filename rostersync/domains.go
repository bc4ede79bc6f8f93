package rostersync

import (
	"fmt"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
)

// user is one user of the Syncer: its normalised localpart and its domain,
// one of those served.
type user struct {
	local, domain string
}

// key is the user's bare JID, the key of everything the Syncer keeps of it.
func (u user) key() string { return u.local + "@" + u.domain }

// normaliseDomain returns domain as JIDs spell it (lower case, no trailing
// dot), or lower-cased when it is not a valid domain.
func normaliseDomain(domain string) string {
	if j, err := jid.New("", domain, ""); err == nil {
		return j.Domainpart()
	}
	return strings.ToLower(domain)
}

// parseUser reads a user's name as the Syncer's callers give it: a
// normalised localpart of the default domain, or a bare JID on a domain
// served. The localpart is not checked here (the fetch checks it).
func (s *Syncer) parseUser(name string) (user, error) {
	local, domain, isJID := strings.Cut(name, "@")
	if !isJID {
		return user{local: name, domain: s.domains[0]}, nil
	}
	domain = normaliseDomain(domain)
	if !slices.Contains(s.domains, domain) {
		return user{}, rosterhttp.NotServed(fmt.Sprintf("user %s: domain %s is not one of the user domains served here (%s)",
			name, domain, strings.Join(s.domains, ", ")))
	}
	return user{local: local, domain: domain}, nil
}

// name is how Results name u: its localpart on the default domain, else
// its bare JID.
func (s *Syncer) name(u user) string {
	if u.domain == s.domains[0] {
		return u.local
	}
	return u.key()
}

// owner returns u's JID once the rosters of its domain can be synced.
func (s *Syncer) owner(u user) (jid.JID, error) {
	if err := s.link.Ready(u.domain); err != nil {
		return jid.JID{}, err
	}
	j, err := jid.New(u.local, u.domain, "")
	if err != nil {
		return j, fmt.Errorf("user %q: %w", s.name(u), err)
	}
	return j, nil
}

// Domains returns the domains served, normalised, the default domain first.
func (s *Syncer) Domains() []string { return slices.Clone(s.domains) }

// DomainReady is the readiness of one domain served.
type DomainReady struct {
	// Domain is the normalised domain.
	Domain string
	// Default is set for the default domain.
	Default bool
	// Err is nil when the rosters of the domain can be synced, else why not.
	Err error
}

// ReadyDomains returns the readiness of every domain served, the default
// domain first.
func (s *Syncer) ReadyDomains() []DomainReady {
	out := make([]DomainReady, len(s.domains))
	for i, d := range s.domains {
		out[i] = DomainReady{Domain: d, Default: i == 0, Err: s.link.Ready(d)}
	}
	return out
}

// Ready returns nil when rosters of the default domain can be synced: the
// Syncer is ready, though users of another domain not granted fail. Its
// error lists every domain that is not ready and why (a *NotReadyError
// when the link is up; the link's error, such as not connected, when that
// error is the same for all).
func (s *Syncer) Ready() error {
	err := s.link.Ready(s.domains[0])
	if err == nil || len(s.domains) == 1 {
		return err
	}
	e := &NotReadyError{}
	same := true
	for _, d := range s.ReadyDomains() {
		if d.Err != nil {
			e.Domains = append(e.Domains, d)
			same = same && d.Err.Error() == err.Error()
		}
	}
	if same && len(e.Domains) == len(s.domains) {
		return err
	}
	return e
}

// NotReadyError is the error of Syncer.Ready when the default domain is
// not ready: the domains that are not, the default first.
type NotReadyError struct {
	Domains []DomainReady
}

func (e *NotReadyError) Error() string {
	names := make([]string, len(e.Domains))
	whys := make([]string, len(e.Domains))
	for i, d := range e.Domains {
		names[i], whys[i] = d.Domain, d.Err.Error()
	}
	return "not ready for " + strings.Join(names, ", ") + ": " + strings.Join(whys, "; ")
}

// Unwrap returns the domains' errors.
func (e *NotReadyError) Unwrap() []error {
	errs := make([]error, len(e.Domains))
	for i, d := range e.Domains {
		errs[i] = d.Err
	}
	return errs
}
