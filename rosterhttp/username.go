package rosterhttp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// maxPartBytes is the longest localpart or domainpart RFC 7622 allows.
const maxPartBytes = 1023

// forbiddenLocal are the characters RFC 7622 section 3.3.1 forbids in a
// localpart on top of the PRECIS UsernameCaseMapped profile.
const forbiddenLocal = `'"&/:<>@`

// ErrDomainNotServed is wrapped by the error of ParseUser (and
// ParseUsername) for a bare JID whose domain is a valid domain but not one
// of the domains served: the username itself is well formed.
var ErrDomainNotServed = errors.New("domain not served")

// NotServed returns an error with the text msg that wraps
// ErrDomainNotServed, for a user of a domain not served.
func NotServed(msg string) error { return &notServedError{msg} }

type notServedError struct{ msg string }

func (e *notServedError) Error() string        { return e.msg }
func (e *notServedError) Is(target error) bool { return target == ErrDomainNotServed }

// ParseUsername validates a username of a refresh request and returns its
// PRECIS-normalised (UsernameCaseMapped) localpart. s is either a bare
// localpart ("john") or a bare JID on userDomain ("john@example.org"); the
// domains are compared after normalisation. A resource, another domain, an
// empty localpart, one longer than 1023 bytes (before or after normalisation)
// or one RFC 7622 forbids is an error whose text is a plain sentence fit for
// an HTTP 400 answer.
func ParseUsername(s, userDomain string) (string, error) {
	local, _, err := ParseUser(s, []string{userDomain})
	if err != nil {
		return "", err
	}
	return local, nil
}

// ParseUser is ParseUsername for a sidecar that serves the users of several
// domains, the first of which is the default domain: a bare localpart is a
// user of the default domain, a bare JID names its domain. It returns the
// normalised localpart and domain. When s is a well-formed bare JID whose
// domain is not one of domains, the error wraps ErrDomainNotServed, and
// local and domain are still returned, normalised.
func ParseUser(s string, domains []string) (local, domain string, err error) {
	if len(domains) == 0 {
		return "", "", errors.New("no user domain is served")
	}
	served := make([]jid.JID, len(domains))
	for i, d := range domains {
		if served[i], err = jid.New("", d, ""); err != nil {
			return "", "", fmt.Errorf("user domain %s is not valid: %w", quote(d), err)
		}
	}
	j, err := parseLocal(s, served)
	switch {
	case errors.Is(err, ErrDomainNotServed):
		err = NotServed(fmt.Sprintf("invalid username %s: %s", quote(s), err))
	case err != nil:
		return "", "", fmt.Errorf("invalid username %s: %w", quote(s), err)
	}
	return j.Localpart(), j.Domainpart(), err
}

// servedNames lists the domains for an error text.
func servedNames(domains []jid.JID) string {
	if len(domains) == 1 {
		return domains[0].String() + ", the domain served here"
	}
	names := make([]string, len(domains))
	for i, d := range domains {
		names[i] = d.String()
	}
	return "one of the domains served here (" + strings.Join(names, ", ") + ")"
}

// parseLocal does the work of ParseUser; its errors lack the username. The
// user's domain is domains[0] unless s names one; an error wrapping
// ErrDomainNotServed comes with the user's JID on the domain it names.
func parseLocal(s string, domains []jid.JID) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, errors.New("it is empty")
	}
	if !utf8.ValidString(s) {
		return jid.JID{}, errors.New("it is not valid UTF-8")
	}
	domain := domains[0]
	local, dom, isJID := strings.Cut(s, "@")
	var notServed error
	if isJID {
		if strings.Contains(dom, "/") {
			return jid.JID{}, errors.New("it has a resource; give a localpart or a bare JID")
		}
		if local == "" {
			return jid.JID{}, errors.New("its localpart is empty")
		}
		d, err := jid.New("", dom, "")
		if err != nil || strings.Contains(dom, "@") {
			return jid.JID{}, fmt.Errorf("its domain is not %s", servedNames(domains))
		}
		i := slices.IndexFunc(domains, d.Equal)
		if i < 0 {
			notServed = NotServed("its domain is not " + servedNames(domains))
			domain = d
		} else {
			domain = domains[i]
		}
	}
	if len(local) > maxPartBytes {
		return jid.JID{}, fmt.Errorf("it is longer than %d bytes", maxPartBytes)
	}
	for _, r := range local {
		switch {
		case strings.ContainsRune(forbiddenLocal, r):
			return jid.JID{}, fmt.Errorf("it contains %q, which an XMPP localpart may not contain", r)
		case unicode.IsSpace(r):
			return jid.JID{}, errors.New("it contains a space, which an XMPP localpart may not contain")
		case unicode.IsControl(r):
			return jid.JID{}, errors.New("it contains a control character, which an XMPP localpart may not contain")
		}
	}
	if local == "." || local == ".." {
		// Valid localparts, but a path segment that HTTP servers and
		// proxies resolve away, so the backend would see another URL.
		return jid.JID{}, errors.New(`"." and ".." cannot be sent to the backend as a path segment`)
	}
	j, err := domain.WithLocal(local)
	if err != nil {
		return jid.JID{}, fmt.Errorf("it is not a valid XMPP localpart: %w", err)
	}
	return j, notServed
}

// quote quotes s for an error text, shortening it when it is long so that a
// hostile input cannot blow up error texts and logs.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", s[:cut])
}
