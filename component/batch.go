package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"roster-sidecar/roster"
)

// Limits of one batch request. Prosody refuses stanzas from components
// larger than component_stanza_size_limit (512 KiB by default), so a
// larger change set is split into several requests, each one roster load
// and save on the server.
const (
	maxBatchBytes = 256 << 10
	maxBatchItems = 2000
)

// ApplyBatch removes the contacts remove and sets the items set in owner's
// roster through the server helper (NSHelper), in one request per
// maxBatchBytes/maxBatchItems: the server loads and saves the roster once
// per request, pushes each changed item to the owner's online clients and
// sends the presence the new subscriptions allow. Callers check CanBatch
// first. It implements rostersync.BatchStore.
//
// removeErrs and setErrs are nil when every item was applied, else as long
// as remove and set with the error of each item not applied. err is not
// nil, and nothing was applied, when the first request could not be sent or
// the server no longer knows the request (the helper was unloaded: CanBatch
// is false from then on, until the next connection).
func (c *Conn) ApplyBatch(ctx context.Context, owner string, remove []string, set []roster.Item) (removeErrs, setErrs []error, err error) {
	sess := c.session()
	if sess == nil {
		return nil, nil, fmt.Errorf("write roster of %s: %w", owner, ErrDisconnected)
	}
	domain := domainOf(owner)
	fail := func(i int, e error) {
		if i < len(remove) {
			if removeErrs == nil {
				removeErrs = make([]error, len(remove))
			}
			removeErrs[i] = fmt.Errorf("remove %s from roster of %s: %w", remove[i], owner, e)
			return
		}
		if setErrs == nil {
			setErrs = make([]error, len(set))
		}
		setErrs[i-len(remove)] = fmt.Errorf("set %s in roster of %s: %w", set[i-len(remove)].JID, owner, e)
	}
	// Items are numbered removals first, then sets, and sent in that order.
	total := len(remove) + len(set)
	body := make([]byte, 0, min(maxBatchBytes, 64*total+64))
	for start := 0; start < total; {
		body = body[:0]
		end := start
		for end < total && end-start < maxBatchItems {
			n := len(body)
			body = appendBatchItem(body, remove, set, end)
			if len(body) > maxBatchBytes && end > start {
				body = body[:n]
				break
			}
			end++
		}
		failed, err := c.batchRequest(ctx, sess, owner, body)
		if err != nil {
			var stErr *StanzaError
			if start == 0 && errors.As(err, &stErr) && (stErr.Condition == "service-unavailable" || stErr.Condition == "feature-not-implemented") {
				sess.helper.set(domain, false, false)
				c.log.Warn("the server no longer knows the helper's request: writing one item per request until the next connection",
					"domain", domain, "feature", NSHelper, "error", err)
				return nil, nil, fmt.Errorf("write roster of %s: %w", owner, err)
			}
			if start == 0 && errors.Is(err, ErrDisconnected) {
				return nil, nil, fmt.Errorf("write roster of %s: %w", owner, err)
			}
			for i := start; i < end; i++ {
				fail(i, err)
			}
		} else if len(failed) > 0 {
			for i := start; i < end; i++ {
				if e, ok := failed[batchItemJID(remove, set, i)]; ok {
					fail(i, e)
				}
			}
		}
		start = end
	}
	return removeErrs, setErrs, nil
}

// batchItemJID is the JID of item i: removals first, then sets.
func batchItemJID(remove []string, set []roster.Item, i int) string {
	if i < len(remove) {
		return remove[i]
	}
	return set[i-len(remove)].JID
}

// appendBatchItem appends item i (removals first, then sets) of a batch.
func appendBatchItem(b []byte, remove []string, set []roster.Item, i int) []byte {
	if i < len(remove) {
		b = append(b, "<item"...)
		b = appendAttr(b, "jid", remove[i], false)
		return append(b, ` subscription="remove"></item>`...)
	}
	it := set[i-len(remove)]
	b = append(b, "<item"...)
	b = appendAttr(b, "jid", it.JID, false)
	b = appendAttr(b, "name", it.Name, true)
	b = appendAttr(b, "subscription", it.Subscription, true)
	b = append(b, '>')
	for _, g := range it.Groups {
		b = append(b, "<group>"...)
		b = appendEscaped(b, g)
		b = append(b, "</group>"...)
	}
	return append(b, "</item>"...)
}

// appendBatch appends to b the helper's request for owner whose items are
// body (appendBatchItem's).
func appendBatch(b []byte, id, from, to, owner string, body []byte) []byte {
	b = append(b, "<iq"...)
	b = appendAttr(b, "type", "set", true)
	b = appendAttr(b, "id", id, true)
	b = appendAttr(b, "from", from, true)
	b = appendAttr(b, "to", to, true)
	b = append(b, `><apply xmlns="`+NSHelper+`"`...)
	b = appendAttr(b, "jid", owner, false)
	b = append(b, '>')
	b = append(b, body...)
	return append(b, "</apply></iq>"...)
}

// batchReply is what batchRequest reads of the helper's answer.
type batchReply struct {
	Failed []struct {
		JID       string `xml:"jid,attr"`
		Condition string `xml:"condition,attr"`
	} `xml:"urn:xmpp:roster-sidecar:0 applied>failed"`
}

// batchRequest sends one request for owner with the items body to owner's
// domain and returns the items the server did not apply, by JID as sent.
func (c *Conn) batchRequest(ctx context.Context, sess *session, owner string, body []byte) (map[string]error, error) {
	domain := domainOf(owner)
	raw, err := c.roundTrip(ctx, sess, "batch", domain, func(id string) error {
		return sess.relay.Send(appendBatch(make([]byte, 0, len(body)+256), id, c.cfg.Domain, domain, owner, body))
	})
	if err != nil || raw == nil {
		return nil, err
	}
	var r batchReply
	_ = xml.Unmarshal(raw, &r) // the relay has read it whole: it is well-formed
	if len(r.Failed) == 0 {
		return nil, nil
	}
	failed := make(map[string]error, len(r.Failed))
	for _, f := range r.Failed {
		cond := f.Condition
		if cond == "" {
			cond = "undefined-condition"
		}
		failed[f.JID] = &StanzaError{Type: "modify", Condition: cond}
	}
	return failed, nil
}
