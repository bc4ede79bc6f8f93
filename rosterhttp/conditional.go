package rosterhttp

import (
	"crypto/sha256"
	"net/http"
	"time"

	"roster-sidecar/internal/lru"
)

// DefaultConditionalCache is the usual Config.ConditionalCache: the
// validators of this many users are remembered, about 18 MB of memory at
// most with ETags of up to 64 bytes (see validatorsBytes).
const DefaultConditionalCache = 100_000

// MaxETagBytes is the longest ETag remembered; a longer one is not (the
// fetch works, the next one is not conditional), which bounds the memory
// of an entry.
const MaxETagBytes = 128

// validatorsBytes is about what one remembered user costs in memory with a
// 64-byte ETag and a Last-Modified date, measured by
// TestConditionalCacheMemory: the hashed key, the entry, the map slot and
// the ETag. A 128-byte ETag adds 64.
const validatorsBytes = 180

// Outcomes of a conditional fetch, for Observer.ConditionalFetch.
const (
	// ConditionalNotModified: the backend answered 304 Not Modified.
	ConditionalNotModified = "not_modified"
	// ConditionalModified: it answered 200 with the roster.
	ConditionalModified = "modified"
	// ConditionalError: the fetch failed.
	ConditionalError = "error"
)

// validators are what a backend's answer said to identify its version
// (RFC 9110 8.8): an ETag and a Last-Modified date.
type validators struct {
	etag string
	// modified is Last-Modified in Unix seconds; 0 for none.
	modified int64
}

// cacheKey identifies a user's roster URL in the cache: a hash of the
// user's bare JID, so that an entry has a fixed size whatever the
// username's length (up to 1,023 bytes).
type cacheKey [16]byte

func keyOf(local, domain string) cacheKey {
	sum := sha256.Sum256([]byte(local + "@" + domain))
	return cacheKey(sum[:16])
}

// newValidatorCache returns the cache of Config.ConditionalCache entries,
// nil for none.
func newValidatorCache(n int) *lru.Cache[cacheKey, validators] {
	if n <= 0 {
		return nil
	}
	return lru.New[cacheKey, validators](n)
}

// validatorsOf returns the validators of a 200 answer; zero when it has
// none usable. An ETag is used only when it is one (RFC 9110 8.8.3,
// strong or weak) of at most MaxETagBytes; Last-Modified only when it is
// an HTTP date.
func validatorsOf(h http.Header) validators {
	var v validators
	if etag := h.Get("ETag"); validETag(etag) {
		v.etag = etag
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil && t.Unix() > 0 {
			v.modified = t.Unix()
		}
	}
	return v
}

func (v validators) empty() bool { return v.etag == "" && v.modified == 0 }

// set adds the conditional headers of v to h: If-None-Match with the ETag
// and If-Modified-Since with the date, as the backend sent them (the date
// in the IMF-fixdate form; a server must compare it exactly or as a date).
func (v validators) set(h http.Header) {
	if v.etag != "" {
		h.Set("If-None-Match", v.etag)
	}
	if v.modified != 0 {
		h.Set("If-Modified-Since", time.Unix(v.modified, 0).UTC().Format(http.TimeFormat))
	}
}

// validETag reports whether s is an entity tag: optionally W/, then a
// quoted string of etagc (0x21, 0x23-0x7E and 0x80-0xFF), at most
// MaxETagBytes long.
func validETag(s string) bool {
	if len(s) > MaxETagBytes {
		return false
	}
	if len(s) >= 2 && s[:2] == "W/" {
		s = s[2:]
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}
