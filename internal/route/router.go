// Package route holds the router (host + longest path prefix -> route) and
// the request pipeline every proxied request takes (see pipeline.go).
package route

import (
	"sort"
	"strings"

	"github.com/sekisho/sekisho/internal/pathnorm"
	"github.com/sekisho/sekisho/internal/session"
)

// Router maps a host and a normalised path to the route that serves them.
//
// Host precedence: an exact host name wins over a wildcard "*.example.com"
// (the longest matching suffix first), which wins over "*". The most specific
// host that has any route decides: if none of its path prefixes match, the
// answer is "no route" (404), never a fall-through to a less specific host —
// so adding a route for a host cannot silently move its unmatched paths to a
// catch-all app. Within a host, the longest path prefix wins, matched on
// whole segments (pathnorm.HasPrefix).
type Router[T any] struct {
	exact    map[string][]entry[T]
	wildcard []wildcard[T] // longest suffix first
	any      []entry[T]
}

type entry[T any] struct {
	prefix string
	val    T
}

type wildcard[T any] struct {
	suffix  string // ".example.com"
	entries []entry[T]
}

// Add registers val for host and path prefix. Hosts are matched without case.
// Call Add for every route before the first Match; a Router is read-only and
// safe for concurrent use after that.
func (r *Router[T]) Add(host, prefix string, val T) {
	host = strings.ToLower(host)
	e := entry[T]{prefix: prefix, val: val}
	switch {
	case host == "*":
		r.any = insert(r.any, e)
	case strings.HasPrefix(host, "*."):
		suffix := host[1:]
		for i := range r.wildcard {
			if r.wildcard[i].suffix == suffix {
				r.wildcard[i].entries = insert(r.wildcard[i].entries, e)
				return
			}
		}
		r.wildcard = append(r.wildcard, wildcard[T]{suffix: suffix, entries: []entry[T]{e}})
		sort.SliceStable(r.wildcard, func(i, j int) bool { return len(r.wildcard[i].suffix) > len(r.wildcard[j].suffix) })
	default:
		if r.exact == nil {
			r.exact = map[string][]entry[T]{}
		}
		r.exact[strings.Trim(host, "[]")] = insert(r.exact[strings.Trim(host, "[]")], e)
	}
}

// Each calls f for every registered value (before serving: it is not safe
// beside Add).
func (r *Router[T]) Each(f func(T)) {
	for _, l := range r.exact {
		for _, e := range l {
			f(e.val)
		}
	}
	for _, w := range r.wildcard {
		for _, e := range w.entries {
			f(e.val)
		}
	}
	for _, e := range r.any {
		f(e.val)
	}
}

// insert keeps entries sorted by prefix length, longest first.
func insert[T any](l []entry[T], e entry[T]) []entry[T] {
	l = append(l, e)
	sort.SliceStable(l, func(i, j int) bool { return len(l[i].prefix) > len(l[j].prefix) })
	return l
}

// Match returns the value for the request's Host header and normalised path.
func (r *Router[T]) Match(hostHeader, cleanPath string) (T, bool) {
	host := CanonicalHost(hostHeader)
	if l, ok := r.exact[host]; ok {
		return longest(l, cleanPath)
	}
	for _, w := range r.wildcard {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return longest(w.entries, cleanPath)
		}
	}
	if r.any != nil {
		return longest(r.any, cleanPath)
	}
	var zero T
	return zero, false
}

// HostKnown reports whether any route names host exactly or by wildcard
// (not counting "*").
func (r *Router[T]) HostKnown(hostHeader string) bool {
	host := CanonicalHost(hostHeader)
	if _, ok := r.exact[host]; ok {
		return true
	}
	for _, w := range r.wildcard {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return true
		}
	}
	return false
}

func longest[T any](l []entry[T], p string) (T, bool) {
	for _, e := range l {
		if pathnorm.HasPrefix(p, e.prefix) {
			return e.val, true
		}
	}
	var zero T
	return zero, false
}

// CanonicalHost lower-cases a Host header and removes the port, IPv6
// brackets and one trailing dot. It is session.CanonicalHost, the form a
// session is bound to, so a session is bound to exactly what picks the app.
func CanonicalHost(h string) string { return session.CanonicalHost(h) }
