package rosterhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
)

// Parse validates a backend's answer to a roster fetch for owner
// (PROTOCOL.md section 1). body must be a JSON object, else Parse fails and
// the user's roster must be left alone. Each key is a contact's JID and each
// value an object with the optional fields "name" (string), "groups" (array of
// strings, or an object whose keys are the groups whatever their values) and
// "subscription" ("both", "to", "from" or "none"; default "both"); unknown
// fields are ignored and null counts as absent, for a whole value too.
//
// A contact that is not valid (a key that is not a bare JID, the owner's own
// bare JID, a value of the wrong type, a JID that XMPP servers refuse
// although PRECIS takes it) is reported in Skipped and the rest still
// applies. When several keys normalise to the same JID, or to JIDs
// that XMPP servers store as one (roster.FoldJID: straße@ and strasse@), the
// first valid one in byte order of the keys is kept and the others are
// skipped as duplicates. When the JSON object itself repeats a key, the last
// occurrence wins, as with encoding/json.
//
// Names and groups are normalised to what the servers store and return
// (xmlText): characters XML forbids and bytes that are not UTF-8 become
// U+FFFD, carriage returns line feeds. The contact is kept: its name or
// group reads as the server shows it, and an unchanged backend answer
// rewrites nothing at the next sync. Groups then lose empty names and
// duplicates.
//
// Parse applies the default Limits; see Limits.Parse.
func Parse(body []byte, owner jid.JID) (Roster, error) {
	return Limits{}.Parse(body, owner)
}

// Parse is the package's Parse with the limits l: an answer that lists more
// than l.MaxItems contacts fails with a *TooManyContactsError, and a
// contact over another limit is skipped with the reason. An error of l
// (a negative field) is an error of every call.
func (l Limits) Parse(body []byte, owner jid.JID) (Roster, error) {
	l, err := l.withDefaults()
	if err != nil {
		return Roster{}, err
	}
	var contacts map[string]json.RawMessage
	switch kind(body) {
	case '{':
		if err := json.Unmarshal(body, &contacts); err != nil {
			return Roster{}, &NotRosterError{Reason: "not valid JSON", Err: err}
		}
	case 0:
		return Roster{}, &NotRosterError{Reason: "empty, not a JSON object"}
	default:
		if !json.Valid(body) {
			return Roster{}, &NotRosterError{Reason: "not valid JSON"}
		}
		return Roster{}, &NotRosterError{Reason: "a JSON " + kindName(kind(body)) + ", not an object"}
	}

	if len(contacts) > l.MaxItems {
		return Roster{}, &TooManyContactsError{Count: len(contacts), Limit: l.MaxItems}
	}

	self := roster.FoldJID(owner.Bare().String())
	keys := slices.Sorted(maps.Keys(contacts))
	kept := make(map[string]keptContact, len(keys)) // folded JID -> the contact kept
	var r Roster
	for _, key := range keys {
		item, err := parseContact(key, contacts[key], self, l)
		var fold string
		if err == nil {
			fold = roster.FoldJID(item.JID)
			if first, dup := kept[fold]; dup {
				err = duplicate(first, item.JID, fold)
			}
		}
		if err != nil {
			skip := Skipped{JID: key, Reason: err.Error()}
			if c, perr := parseContactJID(key); perr == nil && roster.FoldJID(c) != self {
				skip.Contact = c
			}
			r.Skipped = append(r.Skipped, skip)
			continue
		}
		kept[fold] = keptContact{key: key, jid: item.JID}
		r.Items = append(r.Items, item)
	}
	slices.SortFunc(r.Items, func(a, b roster.Item) int { return strings.Compare(a.JID, b.JID) })
	return r, nil
}

// keptContact is a contact Parse kept: its key in the backend's object and
// its normalised JID.
type keptContact struct{ key, jid string }

// duplicate is the error of a contact whose JID folds to the same as the
// one of first, a contact already kept.
func duplicate(first keptContact, jid, fold string) error {
	if jid == first.jid {
		return fmt.Errorf("duplicate of %s", quote(first.key))
	}
	return fmt.Errorf("duplicate of %s: XMPP servers store both as %s", quote(first.key), quote(fold))
}

// parseContact validates one contact, key and value of the backend's
// object, and checks it against l. self is the fold (roster.FoldJID) of the
// owner's bare JID.
func parseContact(key string, value json.RawMessage, self string, l Limits) (roster.Item, error) {
	item, err := parseContactValue(key, value, self)
	if err != nil {
		return roster.Item{}, err
	}
	if err := l.checkItem(item); err != nil {
		return roster.Item{}, err
	}
	return item, nil
}

// parseContactValue does the work of parseContact but the limits.
func parseContactValue(key string, value json.RawMessage, self string) (roster.Item, error) {
	contact, err := parseContactJID(key)
	if err != nil {
		return roster.Item{}, err
	}
	if roster.FoldJID(contact) == self {
		return roster.Item{}, errors.New("the user's own JID")
	}
	item := roster.Item{JID: contact, Subscription: roster.SubscriptionBoth}

	var fields map[string]json.RawMessage
	switch kind(value) {
	case 'n':
		return item, nil
	case '{':
		if err := json.Unmarshal(value, &fields); err != nil {
			return roster.Item{}, fmt.Errorf("value is not a valid object: %w", err)
		}
	default:
		return roster.Item{}, fmt.Errorf("value is a JSON %s, not an object", kindName(kind(value)))
	}

	if raw, ok := fields["name"]; ok {
		switch kind(raw) {
		case 'n':
		case '"':
			if err := json.Unmarshal(raw, &item.Name); err != nil {
				return roster.Item{}, fmt.Errorf("name is not a valid string: %w", err)
			}
			item.Name = xmlText(item.Name)
		default:
			return roster.Item{}, fmt.Errorf("name is a JSON %s, not a string", kindName(kind(raw)))
		}
	}
	if raw, ok := fields["groups"]; ok {
		if item.Groups, err = parseGroups(raw); err != nil {
			return roster.Item{}, err
		}
	}
	if raw, ok := fields["subscription"]; ok {
		switch kind(raw) {
		case 'n':
		case '"':
			if err := json.Unmarshal(raw, &item.Subscription); err != nil {
				return roster.Item{}, fmt.Errorf("subscription is not a valid string: %w", err)
			}
			switch item.Subscription {
			case roster.SubscriptionBoth, roster.SubscriptionTo, roster.SubscriptionFrom, roster.SubscriptionNone:
			default:
				return roster.Item{}, fmt.Errorf("subscription %s is not one of both, to, from, none", quote(item.Subscription))
			}
		default:
			return roster.Item{}, fmt.Errorf("subscription is a JSON %s, not a string", kindName(kind(raw)))
		}
	}
	return item, nil
}

// parseContactJID returns the normalised form of a contact's bare JID.
func parseContactJID(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty key, not a JID")
	}
	j, err := jid.Parse(key)
	if err != nil {
		return "", fmt.Errorf("not a valid JID: %w", err)
	}
	if j.Resourcepart() != "" {
		return "", errors.New("JID has a resource; only bare JIDs can be contacts")
	}
	domain := j.Domainpart()
	if !strings.HasPrefix(domain, "[") && slices.Contains(strings.Split(domain, "."), "") {
		return "", errors.New("not a valid JID: its domainpart has an empty label")
	}
	s := j.String()
	// The normal form must be a fixed point, else two fetches could disagree
	// on what the contact is.
	if again, err := jid.Parse(s); err != nil || again.String() != s {
		return "", errors.New("not a valid JID: it has no stable normalised form")
	}
	// Prosody and ejabberd do not answer a roster SET of such a JID: every
	// sync would wait for the IQ timeout and fail.
	if !stringprepBidi(j.Localpart()) || !stringprepBidi(domain) {
		return "", errors.New("XMPP servers refuse this JID: a part with right-to-left characters must start and end with one and have no left-to-right character (stringprep's bidi rule)")
	}
	return s, nil
}

// parseGroups reads the groups field: an array of strings or an object used
// as a set. It returns the non-empty groups, sorted and unique, nil if none.
func parseGroups(raw json.RawMessage) ([]string, error) {
	var groups []string
	switch kind(raw) {
	case 'n':
		return nil, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, fmt.Errorf("groups is not a valid array: %w", err)
		}
		groups = make([]string, 0, len(elems))
		for i, e := range elems {
			if kind(e) != '"' {
				return nil, fmt.Errorf("groups[%d] is a JSON %s, not a string", i, kindName(kind(e)))
			}
			var g string
			if err := json.Unmarshal(e, &g); err != nil {
				return nil, fmt.Errorf("groups[%d] is not a valid string: %w", i, err)
			}
			groups = append(groups, g)
		}
	case '{':
		var set map[string]json.RawMessage
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, fmt.Errorf("groups is not a valid object: %w", err)
		}
		groups = slices.Collect(maps.Keys(set))
	default:
		return nil, fmt.Errorf("groups is a JSON %s, not an array of strings or an object", kindName(kind(raw)))
	}
	for i, g := range groups {
		groups[i] = xmlText(g)
	}
	groups = slices.DeleteFunc(groups, func(g string) bool { return g == "" })
	if len(groups) == 0 {
		return nil, nil
	}
	slices.Sort(groups)
	return slices.Compact(groups), nil
}

// kind returns the first byte of a JSON value after white space: '{', '[',
// '"', 'n' for null, 't' or 'f' for booleans, a digit or '-' for numbers, 0
// for nothing.
func kind(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// JSONKind names the type of the JSON value b (object, array, string, null,
// boolean or number), for error texts.
func JSONKind(b []byte) string { return kindName(kind(b)) }

// kindName names the JSON type that kind reported, for error texts.
func kindName(k byte) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	default:
		return "number"
	}
}
