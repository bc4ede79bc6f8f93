package rosterhttp

import (
	"errors"
	"fmt"
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

// ParseUsername validates a username of a refresh request and returns its
// PRECIS-normalised (UsernameCaseMapped) localpart. s is either a bare
// localpart ("john") or a bare JID on userDomain ("john@example.org"); the
// domains are compared after normalisation. A resource, another domain, an
// empty localpart, one longer than 1023 bytes (before or after normalisation)
// or one RFC 7622 forbids is an error whose text is a plain sentence fit for
// an HTTP 400 answer.
func ParseUsername(s, userDomain string) (string, error) {
	domain, err := jid.New("", userDomain, "")
	if err != nil {
		return "", fmt.Errorf("user domain %s is not valid: %w", quote(userDomain), err)
	}
	local, err := parseLocal(s, domain)
	if err != nil {
		return "", fmt.Errorf("invalid username %s: %w", quote(s), err)
	}
	return local, nil
}

// parseLocal does the work of ParseUsername; its errors lack the username.
func parseLocal(s string, domain jid.JID) (string, error) {
	if s == "" {
		return "", errors.New("it is empty")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("it is not valid UTF-8")
	}
	local, dom, isJID := strings.Cut(s, "@")
	if isJID {
		if strings.Contains(dom, "/") {
			return "", errors.New("it has a resource; give a localpart or a bare JID")
		}
		if local == "" {
			return "", errors.New("its localpart is empty")
		}
		d, err := jid.New("", dom, "")
		if err != nil || !d.Equal(domain) {
			return "", fmt.Errorf("its domain is not %s, the domain served here", domain)
		}
	}
	if len(local) > maxPartBytes {
		return "", fmt.Errorf("it is longer than %d bytes", maxPartBytes)
	}
	for _, r := range local {
		switch {
		case strings.ContainsRune(forbiddenLocal, r):
			return "", fmt.Errorf("it contains %q, which an XMPP localpart may not contain", r)
		case unicode.IsSpace(r):
			return "", errors.New("it contains a space, which an XMPP localpart may not contain")
		case unicode.IsControl(r):
			return "", errors.New("it contains a control character, which an XMPP localpart may not contain")
		}
	}
	if local == "." || local == ".." {
		// Valid localparts, but a path segment that HTTP servers and
		// proxies resolve away, so the backend would see another URL.
		return "", errors.New(`"." and ".." cannot be sent to the backend as a path segment`)
	}
	j, err := domain.WithLocal(local)
	if err != nil {
		return "", fmt.Errorf("it is not a valid XMPP localpart: %w", err)
	}
	return j.Localpart(), nil
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
