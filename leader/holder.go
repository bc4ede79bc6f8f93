package leader

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// The Lease's holderIdentity is a free-form string. An instance that
// advertises its admin URL (Config.AdvertiseURL) writes
//
//	<identity> <admin URL>
//
// there, e.g. "roster-sidecar-7d9f-abcde http://10.1.2.3:5380", so that a
// standby learns from the Lease where the leader's admin API is. An
// instance that advertises nothing writes its identity alone, as before.

// ErrAdvertiseURL is the error of an unusable Config.AdvertiseURL; the
// error returned wraps it and says why.
var ErrAdvertiseURL = errors.New("leader: bad advertise URL")

// HolderIdentity returns the holderIdentity of an instance named identity
// that advertises adminURL ("" for none).
func HolderIdentity(identity, adminURL string) string {
	if adminURL == "" {
		return identity
	}
	return identity + " " + adminURL
}

// ParseHolder splits a holderIdentity written by HolderIdentity into the
// identity and the admin URL. A holderIdentity whose last word is not a
// valid advertise URL (an instance that advertises none, or another
// program) is all identity, with no URL.
func ParseHolder(holder string) (identity, adminURL string) {
	i := strings.LastIndexFunc(holder, unicode.IsSpace)
	if i < 0 {
		return holder, ""
	}
	id, u := strings.TrimRightFunc(holder[:i], unicode.IsSpace), holder[i+1:]
	if id == "" || CheckAdvertiseURL(u) != nil {
		return holder, ""
	}
	return id, u
}

// CheckAdvertiseURL returns nil when u can be advertised as an admin URL:
// an absolute http or https URL with a host (and optional port), nothing
// after it but an optional "/", no user information and no white space.
// Otherwise it returns an error wrapping ErrAdvertiseURL.
func CheckAdvertiseURL(u string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrAdvertiseURL, u, why) }
	if strings.ContainsFunc(u, unicode.IsSpace) {
		return bad("it contains white space")
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return bad("not a URL")
	case p.Scheme != "http" && p.Scheme != "https":
		return bad("the scheme must be http or https")
	case p.Host == "" || p.Hostname() == "":
		return bad("no host")
	case p.User != nil:
		return bad("it must not carry user information")
	case (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.ForceQuery || p.Fragment != "" || p.Opaque != "":
		return bad("nothing may follow the host and port (the admin API's routes are appended)")
	}
	return nil
}
