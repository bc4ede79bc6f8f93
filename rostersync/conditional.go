package rostersync

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/internal/lru"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// ConditionalFetcher is a Fetcher that can ask the backend whether a user's
// roster changed since its last answer (rosterhttp.Client: HTTP validators
// and 304 Not Modified).
type ConditionalFetcher interface {
	Fetcher
	// FetchChanged is Fetch that remembers the answer's validators; with
	// ifChanged it sends those of the user's last answer fetched this
	// way, and a Roster with NotModified set says that the backend's
	// roster is still that answer's. Roster.Validated says whether a later
	// call may get NotModified.
	FetchChanged(ctx context.Context, owner jid.JID, ifChanged bool) (rosterhttp.Roster, error)
}

// VersionedStore is a Store that reads rosters with roster versioning
// (XEP-0237; component.Conn).
type VersionedStore interface {
	// RosterSince reads owner's roster sending ver, the version of an
	// earlier read ("" for none). When the server answers that the roster
	// has not changed since ver, unchanged is true; otherwise items is the
	// whole roster and version its version ("" when the server gives
	// none, as Prosody's mod_privilege).
	RosterSince(ctx context.Context, owner, ver string) (items []roster.Item, version string, unchanged bool, err error)
}

// How a sync read the server roster, for Result.Read.
const (
	// ReadFull: the whole roster was read.
	ReadFull = "full"
	// ReadUnchanged: the backend answered 304 and a versioned read
	// (XEP-0237) found the roster unchanged since the last sync: nothing
	// to do.
	ReadUnchanged = "unchanged"
	// ReadSkipped: the backend answered 304 within
	// SyncerConfig.ReconcileInterval of the last full read, and the
	// server has no versioned read: not read, nothing done.
	ReadSkipped = "skipped"
)

// syncState is what the Syncer remembers of a user's last successful sync
// whose backend answer had validators: that the server roster was then in
// line with that answer, when it was last seen so, and its version.
type syncState struct {
	// readAt is when the server roster was last seen in line with the
	// backend: the start of the full read of the last sync that wrote the
	// difference (or found none), or of a versioned read that found it
	// unchanged since.
	readAt time.Time
	// version is the server's version (XEP-0237) of the roster in line
	// with the backend; "" when unknown: the server gives none, or the
	// last sync wrote after reading (which changes it).
	version string
}

// stateBytes is about what one remembered user costs in memory with
// ejabberd's 40-character roster versions, measured by
// TestRememberedUserMemory: the hashed key, the entry, the map slot and
// the version. Without versions (Prosody), 48 less.
const stateBytes = 180

// stateKey is the key of a user in Syncer.states: a hash of the bare JID,
// so that an entry has a fixed size.
type stateKey [16]byte

func keyOfUser(user string) stateKey {
	sum := sha256.Sum256([]byte(user))
	return stateKey(sum[:16])
}

// newStates returns the remembered syncs of at most n users, nil for none.
func newStates(n int) *lru.Cache[stateKey, syncState] {
	if n <= 0 {
		return nil
	}
	return lru.New[stateKey, syncState](n)
}

// syncInput is what a sync works from.
type syncInput struct {
	owner   jid.JID
	desired rosterhttp.Roster
	current []roster.Item
	// done is set when there is nothing to do: the backend answered 304
	// and the server roster is known in line with it.
	done bool
	// conditional is set when the fetch went through a ConditionalFetcher
	// (its state is remembered or forgotten at the end).
	conditional bool
	// key and epoch identify the user's remembered state and the epoch it
	// was read in (see Syncer.forgetAll).
	key   stateKey
	epoch uint64
	// readAt and version are when the full read started and the version
	// it returned.
	readAt  time.Time
	version string
}

// readSync fetches the user's desired roster and reads the current one, as
// read does, asking the backend whether the roster changed where that can
// save work, and sets res.NotModified and res.Read.
//
// The validators of the user's last answer are sent only when a 304 can
// end the sync: when a versioned read can tell that the server roster is
// still in line with that answer (a version is remembered), or when that
// was last seen less than ReconcileInterval ago. The desired roster itself
// is not kept: in the one case where a 304 is followed by a change on the
// server (a versioned read returns the roster), the backend is asked again
// without validators. Otherwise the fetch is plain and the whole roster is
// read, with a request for its version where the answer had validators.
func (s *Syncer) readSync(ctx context.Context, u user, res *Result) (in syncInput, err error) {
	cf, ok := s.fetch.(ConditionalFetcher)
	if _, isPush := pushedRoster(ctx); isPush && s.states != nil {
		// A push changes the server roster without a backend answer: a
		// later 304 must not let a sync skip this user's read.
		s.states.Delete(keyOfUser(u.key()))
	}
	if _, isPush := pushedRoster(ctx); !ok || isPush || s.states == nil {
		in.owner, in.desired, in.current, err = s.read(ctx, u)
		if err == nil {
			res.Read = ReadFull
		}
		return in, err
	}
	if in.owner, err = s.owner(u); err != nil {
		return in, err
	}
	in.conditional, in.key, in.epoch = true, keyOfUser(u.key()), s.epoch.Load()
	owner := in.owner.String()
	vs, versioned := s.store.(VersionedStore)
	st, remembered := s.states.Get(in.key)
	byVersion := remembered && versioned && st.version != ""
	byInterval := remembered && s.cfg.ReconcileInterval > 0 && time.Since(st.readAt) < s.cfg.ReconcileInterval
	if in.desired, err = cf.FetchChanged(ctx, in.owner, byVersion || byInterval); err != nil {
		return in, err
	}
	if in.desired.NotModified {
		if !byVersion && !byInterval {
			return in, errors.New("the backend's roster fetch returned 304 Not Modified to a request that was not conditional")
		}
		res.NotModified = true
		if !byVersion {
			res.Read, in.done = ReadSkipped, true
			return in, nil
		}
		readAt := time.Now()
		items, version, unchanged, err := vs.RosterSince(ctx, owner, st.version)
		if err != nil {
			return in, err
		}
		if unchanged {
			res.Read, in.done = ReadUnchanged, true
			s.remember(in, syncState{readAt: readAt, version: st.version})
			return in, nil
		}
		// Changed behind the sidecar's back: the backend's roster is
		// needed to bring it back.
		res.Read, in.current, in.readAt, in.version = ReadFull, items, readAt, version
		res.NotModified = false
		in.desired, err = cf.FetchChanged(ctx, in.owner, false)
		return in, err
	}
	in.readAt = time.Now()
	if versioned && in.desired.Validated {
		in.current, in.version, _, err = vs.RosterSince(ctx, owner, "")
	} else {
		in.current, err = s.store.Roster(ctx, owner)
	}
	if err == nil {
		res.Read = ReadFull
	}
	return in, err
}

// settle remembers or forgets the user's state at the end of a sync that
// went through a ConditionalFetcher: remembered when it succeeded with an
// answer that had validators (the server roster is now in line with it;
// its version is known only when nothing was written), forgotten
// otherwise.
func (s *Syncer) settle(in syncInput, res *Result) {
	if !in.conditional || in.done {
		return
	}
	if res.Err != nil || !in.desired.Validated {
		s.states.Delete(in.key)
		return
	}
	st := syncState{readAt: in.readAt, version: in.version}
	if res.Added+res.Updated+res.Removed > 0 {
		st.version = ""
	}
	s.remember(in, st)
}

// remember records st for the user of in, unless the link was lost since
// in was read.
func (s *Syncer) remember(in syncInput, st syncState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch.Load() != in.epoch {
		return
	}
	s.states.Put(in.key, st)
}

// forgetAll forgets every user's state: the link to the server was lost,
// and the server may come back with other rosters (restarted from a
// backup, edited while it was down). The first sync of each user after it
// reads in full.
func (s *Syncer) forgetAll() {
	if s.states == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	s.states.Clear()
}

// watchLink forgets the remembered states whenever a domain that was ready
// is no longer (the link was lost, or the domain's privilege), until ctx
// ends. A domain never ready has no remembered states to forget.
func (s *Syncer) watchLink(ctx context.Context) {
	ready := make([]bool, len(s.domains))
	for {
		changed := s.link.Changed()
		lost := false
		for i, d := range s.domains {
			was := ready[i]
			ready[i] = s.link.Ready(d) == nil
			lost = lost || was && !ready[i]
		}
		if lost {
			s.forgetAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
