// Package lru is a size-bounded map that evicts its least recently used
// entry, for the per-user state of conditional syncs (rosterhttp's
// validators, rostersync's last sync) whose memory must stay bounded
// whatever the number of users.
package lru

import "sync"

// Cache maps keys to values and holds at most Max entries: putting one more
// evicts the least recently used (read or written). It is safe for
// concurrent use. The zero value is not usable; call New.
type Cache[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]*entry[K, V]
	// root is the sentinel of a circular list, most recently used first.
	root entry[K, V]
}

type entry[K comparable, V any] struct {
	key        K
	val        V
	prev, next *entry[K, V]
}

// New returns a cache of at most max entries; max must be at least 1.
func New[K comparable, V any](max int) *Cache[K, V] {
	if max < 1 {
		panic("lru: max must be at least 1")
	}
	c := &Cache[K, V]{max: max, m: make(map[K]*entry[K, V])}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

// Get returns the value of key and marks it used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(e)
	return e.val, true
}

// Put sets the value of key, marks it used and, when the cache is full,
// evicts the least recently used entry.
func (c *Cache[K, V]) Put(key K, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		e.val = val
		c.moveToFront(e)
		return
	}
	var e *entry[K, V]
	if len(c.m) >= c.max {
		// Reuse the evicted entry: no allocation once full.
		e = c.root.prev
		c.unlink(e)
		delete(c.m, e.key)
	} else {
		e = new(entry[K, V])
	}
	e.key, e.val = key, val
	c.m[key] = e
	c.pushFront(e)
}

// Delete removes key.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.unlink(e)
		delete(c.m, key)
	}
}

// Clear removes every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.root.prev, c.root.next = &c.root, &c.root
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Max is the most entries the cache holds.
func (c *Cache[K, V]) Max() int { return c.max }

func (c *Cache[K, V]) unlink(e *entry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *Cache[K, V]) pushFront(e *entry[K, V]) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

func (c *Cache[K, V]) moveToFront(e *entry[K, V]) {
	if c.root.next == e {
		return
	}
	c.unlink(e)
	c.pushFront(e)
}
