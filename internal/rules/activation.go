package rules

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/sekisho/sekisho/internal/identity"
)

// activation resolves the CEL variables for one request, each only when an
// expression reads it and at most once per request.
type activation struct {
	in   *Input
	addr netip.Addr
	ip   string // origin.ip, once computed
	id   *identity.Identity

	headers *headerMap
	query   *queryMap
	groups  ref.Val
}

var anonymous = &identity.Identity{}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "origin.ip":
		if a.ip == "" {
			a.ip = a.addr.String()
		}
		return types.String(a.ip), true
	case "request.method":
		return types.String(validUTF8(in.Method)), true
	case "request.path":
		return types.String(validUTF8(in.Path)), true
	case "request.host":
		return types.String(validUTF8(in.Host)), true
	case "request.scheme":
		return types.String(validUTF8(in.Scheme)), true
	case "request.headers":
		if a.headers == nil {
			a.headers = &headerMap{h: in.Header}
		}
		return a.headers, true
	case "request.query":
		if a.query == nil {
			a.query = &queryMap{q: in.Query}
		}
		return a.query, true
	case "identity.user":
		return types.String(validUTF8(a.identity().User)), true
	case "identity.email":
		return types.String(validUTF8(a.identity().Email)), true
	case "identity.kind":
		return types.String(string(a.identity().Kind)), true
	case "identity.groups":
		if a.groups == nil {
			a.groups = types.NewStringList(types.DefaultTypeAdapter, validAll(a.identity().Groups))
		}
		return a.groups, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) identity() *identity.Identity {
	if a.id == nil {
		return anonymous
	}
	return a.id
}

// validUTF8 replaces invalid UTF-8 (attacker bytes in headers and queries)
// so that CEL's string functions see well-formed text.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func validAll(ss []string) []string {
	for i, s := range ss {
		if !utf8.ValidString(s) {
			out := append([]string(nil), ss[:i]...)
			for _, s := range ss[i:] {
				out = append(out, validUTF8(s))
			}
			return out
		}
	}
	return ss
}

// headerMap is request.headers: a CEL map(string, string) read straight
// from the http.Header. Keys are lower-case; a header sent several times
// reads as its values joined with ", "; a missing header reads as "" (test
// presence with `"name" in request.headers`). The full map is only built when
// an expression iterates it or compares it whole.
type headerMap struct {
	h    http.Header
	full traits.Mapper
}

func (m *headerMap) get(key string) ([]string, bool) { return headerValues(m.h, key) }

// headerValues returns the values of the header named by lower-case key.
func headerValues(h http.Header, key string) ([]string, bool) {
	if h == nil {
		return nil, false
	}
	if vs, ok := h[textproto.CanonicalMIMEHeaderKey(key)]; ok {
		return vs, true
	}
	vs, ok := h[key] // a key the server could not canonicalise
	return vs, ok
}

// headerValue is what request.headers[key] reads: the values joined with
// ", ", valid UTF-8, "" when missing.
func headerValue(h http.Header, key string) string {
	vs, _ := headerValues(h, key)
	return joinValues(vs)
}

// joinValues joins a header's values as request.headers shows them.
func joinValues(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return validUTF8(vs[0])
	}
	return validUTF8(strings.Join(vs, ", "))
}

func (m *headerMap) materialise() traits.Mapper {
	if m.full == nil {
		out := make(map[string]string, len(m.h))
		for k, vs := range m.h {
			lk := validUTF8(strings.ToLower(k))
			v := validUTF8(strings.Join(vs, ", "))
			if prev, ok := out[lk]; ok {
				v = prev + ", " + v
			}
			out[lk] = v
		}
		m.full = types.NewStringStringMap(types.DefaultTypeAdapter, out)
	}
	return m.full
}

// Find implements traits.Mapper: a missing header is found as "".
func (m *headerMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	return types.String(headerValue(m.h, strings.ToLower(string(k)))), true
}

// Get implements traits.Indexer.
func (m *headerMap) Get(key ref.Val) ref.Val { v, _ := m.Find(key); return v }

// Contains implements traits.Container: whether the header was sent.
func (m *headerMap) Contains(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	_, found := m.get(strings.ToLower(string(k)))
	return types.Bool(found)
}

// Iterator implements traits.Iterable.
func (m *headerMap) Iterator() traits.Iterator { return m.materialise().Iterator() }

// Size implements traits.Sizer.
func (m *headerMap) Size() ref.Val { return m.materialise().Size() }

// ConvertToNative implements ref.Val.
func (m *headerMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialise().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (m *headerMap) ConvertToType(t ref.Type) ref.Val { return m.materialise().ConvertToType(t) }

// Equal implements ref.Val.
func (m *headerMap) Equal(o ref.Val) ref.Val { return m.materialise().Equal(o) }

// Type implements ref.Val.
func (m *headerMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (m *headerMap) Value() any { return m.materialise().Value() }

// queryMap is request.query: a CEL map(string, list(string)) over the parsed
// query. Keys are exact (case-sensitive); a parameter sent several times has
// all its values, in order; a missing parameter reads as [].
type queryMap struct {
	q    url.Values
	full traits.Mapper
}

func (m *queryMap) materialise() traits.Mapper {
	if m.full == nil {
		out := make(map[string][]string, len(m.q))
		for k, vs := range m.q {
			k = validUTF8(k)
			out[k] = append(out[k], validAll(vs)...)
		}
		m.full = types.NewDynamicMap(types.DefaultTypeAdapter, out)
	}
	return m.full
}

// Find implements traits.Mapper: a missing parameter is found as [].
func (m *queryMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	return types.NewStringList(types.DefaultTypeAdapter, validAll(m.q[string(k)])), true
}

// Get implements traits.Indexer.
func (m *queryMap) Get(key ref.Val) ref.Val { v, _ := m.Find(key); return v }

// Contains implements traits.Container: whether the parameter was sent.
func (m *queryMap) Contains(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	_, found := m.q[string(k)]
	return types.Bool(found)
}

// Iterator implements traits.Iterable.
func (m *queryMap) Iterator() traits.Iterator { return m.materialise().Iterator() }

// Size implements traits.Sizer.
func (m *queryMap) Size() ref.Val { return m.materialise().Size() }

// ConvertToNative implements ref.Val.
func (m *queryMap) ConvertToNative(t reflect.Type) (any, error) {
	return m.materialise().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (m *queryMap) ConvertToType(t ref.Type) ref.Val { return m.materialise().ConvertToType(t) }

// Equal implements ref.Val.
func (m *queryMap) Equal(o ref.Val) ref.Val { return m.materialise().Equal(o) }

// Type implements ref.Val.
func (m *queryMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (m *queryMap) Value() any { return m.materialise().Value() }
