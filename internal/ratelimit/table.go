package ratelimit

import "sync"

// entry is one key's deadline: for a rate counter its theoretical arrival
// time (the counter is spent until then), for a ban when the ban ends. Both
// are nanoseconds since Memory.base; once the deadline passes the entry means
// nothing and may be dropped.
type entry struct {
	key      string
	deadline int64
	index    int // position in table.heap
}

// table is one lock shard: a map from key to entry and a min-heap of the
// entries by deadline, so the entry to evict or prune is always at the top.
type table struct {
	mu   sync.Mutex
	max  int
	m    map[string]*entry
	heap []*entry
}

func (t *table) init(max int) {
	t.max = max
	t.m = make(map[string]*entry)
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.heap)
}

// set gives key the deadline: e is the key's entry, or nil to add one. When
// the table is full, adding first drops the entry with the earliest deadline
// (an expired one when there is any). t.mu must be held.
func (t *table) set(e *entry, key string, deadline, now int64) {
	if e != nil {
		e.deadline = deadline
		t.fix(e.index)
		return
	}
	if len(t.heap) >= t.max {
		t.pruneLocked(now)
		if len(t.heap) >= t.max {
			t.remove(0)
		}
	}
	e = &entry{key: key, deadline: deadline, index: len(t.heap)}
	t.heap = append(t.heap, e)
	t.m[key] = e
	t.up(e.index)
}

// prune drops the entries whose deadline is at or before now.
func (t *table) prune(now int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pruneLocked(now)
}

func (t *table) pruneLocked(now int64) int {
	n := 0
	for len(t.heap) > 0 && t.heap[0].deadline <= now {
		t.remove(0)
		n++
	}
	if n > 0 && len(t.heap) < cap(t.heap)/4 {
		// Give back memory after a burst of keys has gone.
		t.heap = append([]*entry(nil), t.heap...)
		m := make(map[string]*entry, len(t.heap))
		for _, e := range t.heap {
			m[e.key] = e
		}
		t.m = m
	}
	return n
}

// remove drops the entry at heap position i.
func (t *table) remove(i int) {
	e := t.heap[i]
	last := len(t.heap) - 1
	if i != last {
		t.swap(i, last)
	}
	t.heap[last] = nil
	t.heap = t.heap[:last]
	if i != last {
		t.fix(i)
	}
	delete(t.m, e.key)
}

func (t *table) fix(i int) {
	if !t.down(i) {
		t.up(i)
	}
}

func (t *table) less(i, j int) bool { return t.heap[i].deadline < t.heap[j].deadline }

func (t *table) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.heap[i].index = i
	t.heap[j].index = j
}

func (t *table) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !t.less(j, i) {
			break
		}
		t.swap(i, j)
		j = i
	}
}

// down moves the entry at i0 down; it reports whether the entry moved.
func (t *table) down(i0 int) bool {
	i, n := i0, len(t.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && t.less(r, l) {
			j = r
		}
		if !t.less(j, i) {
			break
		}
		t.swap(i, j)
		i = j
	}
	return i > i0
}
