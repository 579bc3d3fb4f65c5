package jwtcheck

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheSize is the number of verified tokens a Cache keeps when
// its size is zero.
const DefaultCacheSize = 10000

// Cache remembers verified tokens by their SHA-256, each with a value and
// the window in which it may be used, dropping the least recently used
// beyond its size. It keeps only tokens that verified, so it cannot be
// filled with garbage, and never returns one outside its window (never
// after exp, whatever the leeway). A nil *Cache caches nothing. Safe for
// concurrent use.
type Cache[V any] struct {
	mu   sync.Mutex
	max  int
	ll   *list.List // front: most recently used
	byID map[[sha256.Size]byte]*list.Element
}

type cacheEntry[V any] struct {
	id  [sha256.Size]byte
	val V
	win Window
}

// NewCache returns a cache of size tokens: zero means DefaultCacheSize, a
// negative size means no cache (nil).
func NewCache[V any](size int) *Cache[V] {
	switch {
	case size < 0:
		return nil
	case size == 0:
		size = DefaultCacheSize
	}
	return &Cache[V]{max: size, ll: list.New(), byID: make(map[[sha256.Size]byte]*list.Element)}
}

// Get returns the value stored for token if now is inside its window.
func (c *Cache[V]) Get(token string, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	id := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return zero, false
	}
	e := el.Value.(*cacheEntry[V])
	if now.Before(e.win.NotBefore) || !now.Before(e.win.Expiry) {
		c.ll.Remove(el)
		delete(c.byID, id)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// Put stores val for token, usable within win.
func (c *Cache[V]) Put(token string, val V, win Window) {
	if c == nil {
		return
	}
	id := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		el.Value = &cacheEntry[V]{id: id, val: val, win: win}
		c.ll.MoveToFront(el)
		return
	}
	c.byID[id] = c.ll.PushFront(&cacheEntry[V]{id: id, val: val, win: win})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.byID, old.Value.(*cacheEntry[V]).id)
	}
}

// Len reports how many tokens the cache holds.
func (c *Cache[V]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
