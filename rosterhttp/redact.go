package rosterhttp

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// Redacted replaces what RedactURL and error texts hide.
const Redacted = "REDACTED"

// RedactURL returns the URL (or URL template) raw fit for a log line or a
// report: without its user information and fragment, and with the value of
// every query parameter replaced by Redacted, except a "%s" placeholder.
// The scheme, host and path are kept. A URL that does not parse is shown
// as "(invalid URL)".
func RedactURL(raw string) string {
	const placeholder = "rosterhttp-placeholder"
	u, err := url.Parse(strings.Replace(raw, "%s", placeholder, 1))
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" || u.ForceQuery {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			key, value, ok := strings.Cut(p, "=")
			if ok && value != placeholder {
				params[i] = key + "=" + Redacted
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	return strings.Replace(u.String(), placeholder, "%s", 1)
}

// minSecret is the shortest query value or user information that error
// texts hide: shorter ones are not credentials, and hiding them would
// garble the text.
const minSecret = 4

// urlSecrets returns what error texts must not show of a URL made from the
// template: the user information and the value of each query parameter,
// raw and unescaped, longest first.
func urlSecrets(t urlTemplate) []string {
	u, err := url.Parse(t.url(sampleUser, sampleDomain))
	if err != nil {
		return nil
	}
	var secrets []string
	add := func(s string) {
		if len(s) >= minSecret && !strings.Contains(s, sampleUser) && !strings.Contains(s, sampleDomain) && !slices.Contains(secrets, s) {
			secrets = append(secrets, s)
		}
	}
	if u.User != nil {
		add(u.User.Username())
		pw, _ := u.User.Password()
		add(pw)
		add(u.User.String())
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		_, value, _ := strings.Cut(p, "=")
		add(value)
		if v, err := url.QueryUnescape(value); err == nil {
			add(v)
		}
	}
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return secrets
}

// redactedError is an error whose text hides secrets; it unwraps to the
// original, so that errors.Is and errors.As still see it.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with every secret in its text replaced by Redacted.
func redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	for _, s := range secrets {
		text = strings.ReplaceAll(text, s, Redacted)
	}
	if text == err.Error() {
		return err
	}
	return &redactedError{text: text, err: err}
}

// urlProblem says why url.Parse refused a URL, without quoting the URL:
// its errors quote the part they stumble on, which may be a secret.
func urlProblem(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid URL escape"):
		return errors.New(`it has a "%" that is not followed by two hexadecimal digits (write a "%" as %25)`)
	case strings.Contains(msg, "invalid port"):
		return errors.New("its port is not a number")
	case strings.Contains(msg, "invalid control character"):
		return errors.New("it has a control character")
	case strings.Contains(msg, "in host"):
		return errors.New("its host is not valid")
	case strings.Contains(msg, "invalid userinfo"):
		return errors.New("its user information is not valid")
	}
	return errors.New("it does not parse")
}
