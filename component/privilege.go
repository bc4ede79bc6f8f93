package component

import (
	"encoding/xml"
	"fmt"
	"strings"

	"gosrc.io/xmpp/stanza"
)

// Privilege namespaces of XEP-0356: version 1 (ejabberd 23.x) and version 2
// (Prosody 0.12/13, ejabberd >= 24.10).
const (
	nsPrivilege1 = "urn:xmpp:privilege:1"
	nsPrivilege2 = "urn:xmpp:privilege:2"
)

// privilegeV1 is the <privilege/> element of urn:xmpp:privilege:1. Only
// string attributes are decoded: a decode error would end the library's
// receive loop.
type privilegeV1 struct {
	XMLName xml.Name `xml:"urn:xmpp:privilege:1 privilege"`
	Perms   []perm   `xml:"perm"`
}

// privilegeV2 is the <privilege/> element of urn:xmpp:privilege:2.
type privilegeV2 struct {
	XMLName xml.Name `xml:"urn:xmpp:privilege:2 privilege"`
	Perms   []perm   `xml:"perm"`
}

type perm struct {
	Access string `xml:"access,attr"`
	Type   string `xml:"type,attr"`
}

func init() {
	stanza.TypeRegistry.MapExtension(stanza.PKTMessage, xml.Name{Space: nsPrivilege1, Local: "privilege"}, privilegeV1{})
	stanza.TypeRegistry.MapExtension(stanza.PKTMessage, xml.Name{Space: nsPrivilege2, Local: "privilege"}, privilegeV2{})
}

// Grants are the privileges a server granted for one user domain.
type Grants struct {
	// Roster is the roster access: "", "get", "set" or "both".
	Roster string
	// Message is the message permission, e.g. "outgoing".
	Message string
	// Presence is the presence permission, e.g. "managed_entity".
	Presence string
}

// CanRead reports whether roster GET is granted.
func (g Grants) CanRead() bool { return g.Roster == "get" || g.Roster == "both" }

// CanWrite reports whether roster SET is granted.
func (g Grants) CanWrite() bool { return g.Roster == "set" || g.Roster == "both" }

// String describes the grants for logs and error messages.
func (g Grants) String() string {
	parts := []string{"roster=" + orNone(g.Roster)}
	if g.Message != "" {
		parts = append(parts, "message="+g.Message)
	}
	if g.Presence != "" {
		parts = append(parts, "presence="+g.Presence)
	}
	return strings.Join(parts, " ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// parsePrivilege extracts the grants from a privilege message. ok is false
// when the message carries no privilege element.
func parsePrivilege(msg *stanza.Message) (domain string, g Grants, ok bool) {
	var perms []perm
	var v2 privilegeV2
	var v1 privilegeV1
	switch {
	case msg.Get(&v2):
		perms = v2.Perms
	case msg.Get(&v1):
		perms = v1.Perms
	default:
		return "", Grants{}, false
	}
	for _, p := range perms {
		switch p.Access {
		case "roster":
			g.Roster = p.Type
		case "message":
			g.Message = p.Type
		case "presence":
			g.Presence = p.Type
		}
	}
	return msg.From, g, true
}

// errNoRosterPrivilege explains a missing roster privilege for a domain.
func errNoRosterPrivilege(domain string, g Grants, seen bool) error {
	if !seen {
		return fmt.Errorf("roster privilege not granted: the server sent no privilege for %s (configure mod_privilege for this component)", domain)
	}
	return fmt.Errorf("roster privilege not granted for %s: server granted %s, need roster get and set (type=both)", domain, g)
}
