package daemon

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"

	"roster-sidecar/component"
)

// LinkProblem says why the component cannot sync rosters, and what to fix.
type LinkProblem struct {
	// What went wrong, and Fix what to do about it.
	What, Fix string
	// Connected is true when the component connected but lacks the
	// roster privilege.
	Connected bool
}

func (p *LinkProblem) Error() string { return p.What + "\n  fix: " + p.Fix }

// connectProblem explains a failed connection attempt.
func connectProblem(cfg Config, err error) *LinkProblem {
	var streamErr *component.StreamError
	var netErr net.Error
	switch {
	case errors.Is(err, component.ErrAuth):
		return &LinkProblem{
			What: fmt.Sprintf("the XMPP server at %s refused the component secret for %s (not-authorized)", cfg.XMPPAddress, cfg.XMPPDomain),
			Fix: fmt.Sprintf("xmpp.secret must equal the server's secret for %s (Prosody: component_secret in its Component block; "+
				"ejabberd: password of the ejabberd_service listener), and xmpp.domain must name that component", cfg.XMPPDomain),
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &LinkProblem{
			What: fmt.Sprintf("nothing accepts connections at %s (connection refused)", cfg.XMPPAddress),
			Fix: "start the XMPP server, or set xmpp.address to its component listener " +
				"(Prosody: component_ports and component_interfaces; ejabberd: port and ip of the ejabberd_service listener)",
		}
	case errors.As(err, &streamErr) && streamErr.Condition == "conflict":
		return &LinkProblem{
			What: fmt.Sprintf("the server refused a second connection as %s (conflict)", cfg.XMPPDomain),
			Fix:  "another roster-sidecar is connected as this component: stop it first, or ask its admin API to refresh instead",
		}
	case streamErr != nil && (streamErr.Condition == "host-unknown" || streamErr.Condition == "improper-addressing"):
		return &LinkProblem{
			What: fmt.Sprintf("the server at %s does not know the component %s", cfg.XMPPAddress, cfg.XMPPDomain),
			Fix:  "set xmpp.domain to the component's name (Prosody: the name of its Component block; ejabberd: a name the ejabberd_service listener accepts)",
		}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &LinkProblem{
			What: fmt.Sprintf("no answer from %s within xmpp.connect_timeout (%s): %s", cfg.XMPPAddress, cfg.ConnectTimeout, err),
			Fix:  "check xmpp.address and that no firewall drops the connection",
		}
	}
	return &LinkProblem{
		What: fmt.Sprintf("cannot connect to the XMPP server at %s: %s", cfg.XMPPAddress, err),
		Fix:  "check xmpp.address and that it is the server's component (XEP-0114) listener, not its client port",
	}
}

// privilegeProblem explains a connection without roster get and set for
// userDomain, one of the user domains served; grants are what the server
// sent, by domain.
func privilegeProblem(cfg Config, userDomain string, grants map[string]component.Grants) *LinkProblem {
	domain := strings.ToLower(userDomain)
	g, seen := grants[domain]
	setBoth := fmt.Sprintf(`set roster = "both" for %s in privileged_entities of VirtualHost %q (Prosody), or mod_privilege roster: both (ejabberd)`,
		cfg.XMPPDomain, userDomain)
	key, other := "xmpp.user_domain", "set xmpp.user_domain to the users' domain"
	if !strings.EqualFold(userDomain, cfg.UserDomain) {
		key, other = "the user domain", "remove it from xmpp.user_domains"
	}
	switch {
	case !seen && len(grants) > 0:
		return &LinkProblem{
			Connected: true,
			What:      fmt.Sprintf("connected, but the server granted privileges only for %s, not for %s %s", grantedDomains(grants), key, userDomain),
			Fix:       other + ", or grant the component roster access on " + userDomain + ": " + setBoth,
		}
	case !seen:
		return &LinkProblem{
			Connected: true,
			What:      fmt.Sprintf("connected, but the server sent no privilege message for %s: mod_privilege is not enabled for the component", userDomain),
			Fix: fmt.Sprintf(`Prosody: add "privilege" to modules_enabled in both VirtualHost %q and Component %q, with privileged_entities = { [%q] = { roster = "both" } } on the VirtualHost; `+
				"ejabberd: enable mod_privilege with roster: both for the component", userDomain, cfg.XMPPDomain, cfg.XMPPDomain),
		}
	case g.Roster == "" || g.Roster == "none":
		return &LinkProblem{Connected: true, What: "the server granted no roster access on " + userDomain + " (" + g.String() + ")", Fix: setBoth}
	default:
		return &LinkProblem{Connected: true, What: fmt.Sprintf("the server granted roster=%s only on %s (need get and set)", g.Roster, userDomain), Fix: setBoth}
	}
}

func grantedDomains(grants map[string]component.Grants) string {
	ds := make([]string, 0, len(grants))
	for d := range grants {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return strings.Join(ds, ", ")
}
