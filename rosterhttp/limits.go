package rosterhttp

import (
	"fmt"
	"unicode/utf8"

	"roster-sidecar/roster"
)

// Defaults of the Limits fields left zero.
const (
	// DefaultMaxNameBytes bounds a contact's name.
	DefaultMaxNameBytes = 1024
	// DefaultMaxGroupBytes bounds one group name.
	DefaultMaxGroupBytes = 1024
	// DefaultMaxGroups bounds the groups of a contact.
	DefaultMaxGroups = 64
	// DefaultMaxItems bounds the contacts of an answer.
	DefaultMaxItems = 10000
	// DefaultMaxItemBytes bounds a contact's <item/> as a roster SET
	// carries it: with the SET around it (4 KiB at most) it stays well
	// under 64 KiB, the smallest stanza size limit in common use
	// (ejabberd's recommended max_stanza_size; Prosody's component
	// listener takes 512 KiB by default, ejabberd's service listener has no
	// limit unless max_stanza_size is set).
	DefaultMaxItemBytes = 32 << 10
)

// Limits bound what Parse accepts of a backend's answer, so that no roster
// SET exceeds what an XMPP server takes: a stanza over its limit makes the
// server close the component's stream, failing every sync in flight. Zero
// fields take their default.
type Limits struct {
	// MaxNameBytes is the longest name of a contact, in bytes of UTF-8.
	MaxNameBytes int
	// MaxGroupBytes is the longest group name, in bytes of UTF-8.
	MaxGroupBytes int
	// MaxGroups is the most groups a contact may be in.
	MaxGroups int
	// MaxItems is the most contacts (keys) an answer may list.
	MaxItems int
	// MaxItemBytes is the largest contact as a roster SET encodes it: its
	// <item/> element, escaped.
	MaxItemBytes int
}

// withDefaults returns l with the defaults of its zero fields, or an error
// if a field is negative.
func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		v    *int
		def  int
		what string
	}{
		{&l.MaxNameBytes, DefaultMaxNameBytes, "name length limit"},
		{&l.MaxGroupBytes, DefaultMaxGroupBytes, "group name length limit"},
		{&l.MaxGroups, DefaultMaxGroups, "groups per contact limit"},
		{&l.MaxItems, DefaultMaxItems, "contacts per roster limit"},
		{&l.MaxItemBytes, DefaultMaxItemBytes, "roster item size limit"},
	} {
		switch {
		case *f.v < 0:
			return l, fmt.Errorf("%s %d is negative", f.what, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	return l, nil
}

// TooManyContactsError is an answer that lists more contacts than
// Limits.MaxItems. The whole answer is refused, so that the user's roster
// is left alone: applying part of it would remove the other contacts.
type TooManyContactsError struct {
	// Count is how many contacts the answer lists.
	Count int
	// Limit is Limits.MaxItems.
	Limit int
}

func (e *TooManyContactsError) Error() string {
	return fmt.Sprintf("backend answer lists %d contacts, more than the limit of %d", e.Count, e.Limit)
}

// checkItem refuses a contact over a limit, with the reason. Its name and
// groups are as the SET carries them (xmlText).
func (l Limits) checkItem(it roster.Item) error {
	if n := len(it.Name); n > l.MaxNameBytes {
		return fmt.Errorf("name is %d bytes, more than the limit of %d", n, l.MaxNameBytes)
	}
	if n := len(it.Groups); n > l.MaxGroups {
		return fmt.Errorf("in %d groups, more than the limit of %d", n, l.MaxGroups)
	}
	for _, g := range it.Groups {
		if n := len(g); n > l.MaxGroupBytes {
			return fmt.Errorf("group %s is %d bytes, more than the limit of %d", quote(g), n, l.MaxGroupBytes)
		}
	}
	if n := itemBytes(it); n > l.MaxItemBytes {
		return fmt.Errorf("its roster item is %d bytes as XML, more than the limit of %d", n, l.MaxItemBytes)
	}
	return nil
}

// itemBytes is the length of the <item/> element that a roster SET of it
// carries (component.appendRosterSet, as encoding/xml writes it).
func itemBytes(it roster.Item) int {
	attr := func(name, value string, omitEmpty bool) int {
		if omitEmpty && value == "" {
			return 0
		}
		return len(` ="`) + len(name) + escapedBytes(value) + len(`"`)
	}
	n := len(`<item xmlns="jabber:iq:roster"`) + attr("jid", it.JID, false) + attr("name", it.Name, true) +
		attr("subscription", it.Subscription, true) + len(`>`) + len(`</item>`)
	for _, g := range it.Groups {
		n += len(`<group></group>`) + escapedBytes(g)
	}
	return n
}

// escapedBytes is the length of s escaped as encoding/xml escapes text and
// attribute values.
func escapedBytes(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		switch {
		case r == '"' || r == '\'' || r == '&' || r == '\t' || r == '\n' || r == '\r':
			n += 5 // &#34; &#39; &amp; &#x9; &#xA; &#xD;
		case r == '<' || r == '>':
			n += 4
		case r == utf8.RuneError && w == 1, !xmlChar(r):
			n += utf8.RuneLen(utf8.RuneError)
		default:
			n += w
		}
	}
	return n
}
