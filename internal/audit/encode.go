package audit

import (
	"strconv"
	"unicode/utf8"
)

// appendEntry appends e as one JSON object to b and returns the extended
// buffer. The bytes are exactly those json.Marshal(e) produces (field order,
// omitempty, time.Time.MarshalJSON, and encoding/json's escaping of strings),
// so readers of the log can rely on either; the differential and fuzz tests
// hold the two together. It allocates only when b must grow.
//
// The error is json.Marshal's: a time whose year is outside [0,9999] or whose
// zone offset is 24 hours or more has no RFC 3339 form. Then b is returned
// unchanged.
//
// A new field in Entry must be added here too, in declaration order:
// TestAppendEntryCoversEveryField fails until it is.
func appendEntry(b []byte, e *Entry) ([]byte, error) {
	n0 := len(b)
	b = append(b, `{"time":"`...)
	t, err := e.Time.AppendText(b)
	if err != nil {
		return b[:n0], err // AppendText returned nil
	}
	b = append(t, `","request_id":`...)
	b = appendString(b, e.RequestID)
	if e.Route != "" {
		b = append(b, `,"route":`...)
		b = appendString(b, e.Route)
	}
	b = append(b, `,"host":`...)
	b = appendString(b, e.Host)
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	b = append(b, `,"client_ip":`...)
	b = appendString(b, e.ClientIP)
	if e.User != "" {
		b = append(b, `,"user":`...)
		b = appendString(b, e.User)
	}
	if e.Kind != "" {
		b = append(b, `,"identity_kind":`...)
		b = appendString(b, e.Kind)
	}
	if e.Provider != "" {
		b = append(b, `,"provider":`...)
		b = appendString(b, e.Provider)
	}
	b = append(b, `,"decision":`...)
	b = appendString(b, e.Decision)
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	if e.Rule != "" {
		b = append(b, `,"rule":`...)
		b = appendString(b, e.Rule)
	}
	if e.Preview {
		b = append(b, `,"preview":true`...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, e.Duration, 10)
	if e.Upstream != "" {
		b = append(b, `,"upstream_error":`...)
		b = appendString(b, e.Upstream)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping on (json.Marshal's default): '"' and '\\' are escaped with a
// backslash; \b, \f, \n, \r and \t by name; other bytes below 0x20 and '<',
// '>', '&' as \u00XX; U+2028 and U+2029 as \u2028 and \u2029; each byte of
// invalid UTF-8 becomes \ufffd. The result never holds a raw newline, so a
// field cannot start a forged line in the log.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control bytes, '<', '>', '&'
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// htmlSafe reports the ASCII bytes that encoding/json copies as they are when
// escaping HTML: printable ASCII and DEL, except '"', '\\', '<', '>' and '&'.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
