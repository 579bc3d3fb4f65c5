package waf

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// clientServer is a loopback server whose handler inspects each request
// with a WAF and answers with the verdict as JSON, so a test sees what the
// WAF made of a request exactly as net/http's server handed it over (HTTP/1.1
// or HTTP/2, Expect handled, Transfer-Encoding moved out of the header).
type clientServer struct {
	h1, h2 *httptest.Server
}

// wireVerdict is the handler's answer: the verdict and what it was given.
type wireVerdict struct {
	Verdict Verdict
	Err     string
	Proto   string
	Body    int // bytes of the body left for the upstream after Inspect
}

func newClientServer(t *testing.T, w *WAF) *clientServer {
	t.Helper()
	h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v, err := w.Inspect(r)
		out := wireVerdict{Verdict: v, Proto: r.Proto}
		if err != nil {
			out.Err = err.Error()
		}
		n, _ := io.Copy(io.Discard, r.Body)
		out.Body = int(n)
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(out)
	})
	s := &clientServer{h1: httptest.NewServer(h)}
	s.h2 = httptest.NewUnstartedServer(h)
	s.h2.EnableHTTP2 = true
	s.h2.StartTLS()
	t.Cleanup(func() { s.h1.Close(); s.h2.Close() })
	return s
}

// clientReq is one request as a real client sends it.
type clientReq struct {
	method, path string
	header       map[string]string // as the client sends them
	body         []byte
	host         string // Host header; "" is app.example.com, "-" the server's address
	h2           bool   // over TLS with HTTP/2, as browsers and SDKs do by default
	chunked      bool   // body of unknown length: Transfer-Encoding: chunked on HTTP/1.1
	noUA         bool   // send no User-Agent (Go's client adds one otherwise)
}

func (s *clientServer) send(t *testing.T, c clientReq) wireVerdict {
	t.Helper()
	srv := s.h1
	if c.h2 {
		srv = s.h2
	}
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(bytes.NewReader(c.body)) // hides the length
		}
	}
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	r, err := http.NewRequest(method, srv.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch c.host {
	case "":
		r.Host = "app.example.com"
	case "-":
	default:
		r.Host = c.host
	}
	for k, v := range c.header {
		// SDKs and HTTP/2 send lower-case names; the server canonicalises
		// them on the way in either way.
		r.Header[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	if c.noUA {
		r.Header["User-Agent"] = []string{""}
	}
	client := srv.Client()
	if tr, ok := client.Transport.(*http.Transport); ok {
		tr = tr.Clone()
		tr.ExpectContinueTimeout = 5 * time.Second // send Expect: 100-continue and wait for the 100
		tr.DisableCompression = true               // the Accept-Encoding the case gives, not Go's
		if !c.h2 {
			tr.ForceAttemptHTTP2 = false
		}
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	resp, err := client.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, c.path, err)
	}
	defer resp.Body.Close()
	var out wireVerdict
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: status %d, decoding the verdict: %v", method, c.path, resp.StatusCode, err)
	}
	if out.Err != "" {
		t.Fatalf("%s %s: Inspect: %s", method, c.path, out.Err)
	}
	if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[c.h2]; out.Proto != want {
		t.Fatalf("%s %s: server saw %s, want %s", method, c.path, out.Proto, want)
	}
	if out.Body != len(c.body) {
		t.Fatalf("%s %s: %d body bytes left for the upstream, want %d", method, c.path, out.Body, len(c.body))
	}
	return out
}

// Header sets ordinary clients send, as of 2025.
var (
	chromeNav = map[string]string{
		"User-Agent":                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Accept":                    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
		"Accept-Encoding":           "gzip, deflate, br, zstd",
		"Accept-Language":           "ja,en-US;q=0.9,en;q=0.8",
		"Cache-Control":             "max-age=0",
		"Priority":                  "u=0, i",
		"Sec-Ch-Ua":                 `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`,
		"Sec-Ch-Ua-Mobile":          "?0",
		"Sec-Ch-Ua-Platform":        `"Windows"`,
		"Sec-Fetch-Dest":            "document",
		"Sec-Fetch-Mode":            "navigate",
		"Sec-Fetch-Site":            "same-origin",
		"Sec-Fetch-User":            "?1",
		"Upgrade-Insecure-Requests": "1",
		"Referer":                   "https://app.example.com/chat/8d0c6f2e-3b1a-4c8e-9f6d-2a7b5c4e1d90?tab=history",
		"Cookie":                    "__Host-sekisho=MTczNDU2Nzg5MHxEdi1CQkFFQ180SUFBUkFCRUFBQV85LVxoHyJ3; theme=dark; _ga=GA1.1.1234567890.1734567890",
	}
	firefoxNav = map[string]string{
		"User-Agent":                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Accept":                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"Accept-Language":           "en-US,en;q=0.5",
		"Accept-Encoding":           "gzip, deflate, br, zstd",
		"Upgrade-Insecure-Requests": "1",
		"Sec-Fetch-Dest":            "document",
		"Sec-Fetch-Mode":            "navigate",
		"Sec-Fetch-Site":            "none",
		"Sec-Fetch-User":            "?1",
		"Priority":                  "u=0, i",
		"Te":                        "trailers",
	}
	chromeFetch = map[string]string{
		"User-Agent":         chromeNav["User-Agent"],
		"Accept":             "application/json, text/plain, */*",
		"Accept-Encoding":    "gzip, deflate, br, zstd",
		"Accept-Language":    "ja,en-US;q=0.9,en;q=0.8",
		"Content-Type":       "application/json",
		"Origin":             "https://app.example.com",
		"Referer":            "https://app.example.com/chat/8d0c6f2e-3b1a-4c8e-9f6d-2a7b5c4e1d90",
		"Priority":           "u=1, i",
		"Sec-Ch-Ua":          chromeNav["Sec-Ch-Ua"],
		"Sec-Ch-Ua-Mobile":   "?0",
		"Sec-Ch-Ua-Platform": `"Windows"`,
		"Sec-Fetch-Dest":     "empty",
		"Sec-Fetch-Mode":     "cors",
		"Sec-Fetch-Site":     "same-origin",
		"Cookie":             chromeNav["Cookie"],
	}
	openaiPython = map[string]string{
		"User-Agent":                  "OpenAI/Python 1.58.1",
		"Accept":                      "application/json",
		"Accept-Encoding":             "gzip, deflate",
		"Content-Type":                "application/json",
		"Authorization":               "Bearer sk-proj-4fJ2kD9sL0qW8eR7tY6uI5oP3aS1dF2gH4jK6lZ8xC0vB9nM7",
		"X-Stainless-Lang":            "python",
		"X-Stainless-Package-Version": "1.58.1",
		"X-Stainless-Os":              "Linux",
		"X-Stainless-Arch":            "x64",
		"X-Stainless-Runtime":         "CPython",
		"X-Stainless-Runtime-Version": "3.12.8",
		"X-Stainless-Async":           "false",
		"X-Stainless-Retry-Count":     "0",
		"X-Stainless-Read-Timeout":    "600",
		"Openai-Beta":                 "assistants=v2",
	}
	openaiNode = map[string]string{
		"User-Agent":                  "OpenAI/JS 4.77.0",
		"Accept":                      "application/json",
		"Accept-Encoding":             "gzip,deflate",
		"Content-Type":                "application/json",
		"Authorization":               "Bearer sk-proj-4fJ2kD9sL0qW8eR7tY6uI5oP3aS1dF2gH4jK6lZ8xC0vB9nM7",
		"X-Stainless-Lang":            "js",
		"X-Stainless-Package-Version": "4.77.0",
		"X-Stainless-Os":              "MacOS",
		"X-Stainless-Arch":            "arm64",
		"X-Stainless-Runtime":         "node",
		"X-Stainless-Runtime-Version": "v22.12.0",
		"X-Stainless-Retry-Count":     "1",
		"X-Stainless-Timeout":         "600",
	}
	anthropicPython = map[string]string{
		"User-Agent":                  "Anthropic/Python 0.42.0",
		"Accept":                      "application/json",
		"Accept-Encoding":             "gzip, deflate",
		"Content-Type":                "application/json",
		"X-Api-Key":                   "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AAAA",
		"Anthropic-Version":           "2023-06-01",
		"Anthropic-Beta":              "prompt-caching-2024-07-31,pdfs-2024-09-25",
		"X-Stainless-Lang":            "python",
		"X-Stainless-Package-Version": "0.42.0",
		"X-Stainless-Os":              "Linux",
		"X-Stainless-Arch":            "x64",
		"X-Stainless-Runtime":         "CPython",
		"X-Stainless-Runtime-Version": "3.12.8",
		"X-Stainless-Async":           "async:asyncio",
		"X-Stainless-Retry-Count":     "0",
		"X-Stainless-Timeout":         "600",
	}
	mcpClient = map[string]string{
		"User-Agent":           "claude-code/1.0.17",
		"Accept":               "application/json, text/event-stream",
		"Content-Type":         "application/json",
		"Mcp-Session-Id":       "1868a90c-4a7e-4d7b-b5f1-0c1f5d1d7a2e",
		"Mcp-Protocol-Version": "2025-06-18",
		"Authorization":        "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
	}
)

// with returns h with the given pairs added or replaced; an empty value
// removes the header.
func with(h map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// multipartUpload is a browser's form upload: a text field, a PNG and a
// text file.
func multipartUpload() (body []byte, contentType string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.SetBoundary("----WebKitFormBoundary7MA4YWxkTrZu0gW")
	mw.WriteField("purpose", "assistants")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="screenshot 2025-01-10.png"`)
	h.Set("Content-Type", "image/png")
	p, _ := mw.CreatePart(h)
	p.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"))
	p.Write(bytes.Repeat([]byte{0, 0xff, 0x10, 0x80}, 256))
	fw, _ := mw.CreateFormFile("notes", "meeting-notes.txt")
	fw.Write([]byte("Agenda:\n1. Q3 numbers\n2. Hiring\n"))
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// ordinaryClients are requests real, well-behaved clients send through a
// gateway in front of web apps, LLM APIs and MCP servers.
func ordinaryClients() []struct {
	name string
	req  clientReq
} {
	chat := mustJSON(map[string]any{
		"model": "gpt-4o-mini", "stream": true, "temperature": 0.2,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful assistant for the data team. Answer in the user's language."},
			{"role": "user", "content": "Summarise the attached meeting notes in three bullet points, and suggest a title (under 60 characters)."},
		},
		"tools": []map[string]any{{"type": "function", "function": map[string]any{
			"name": "get_weather", "description": "Get the current weather for a city",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]string{"type": "string"}}, "required": []string{"city"}},
		}}},
	})
	// Over 1 KiB: curl sends Expect: 100-continue on larger uploads (from
	// 1 KiB in many releases).
	bigChat := mustJSON(map[string]any{"model": "gpt-4o", "messages": []map[string]string{
		{"role": "user", "content": strings.Repeat("Please review this paragraph for clarity and tone. ", 40)},
	}})
	claude := mustJSON(map[string]any{
		"model": "claude-sonnet-4-20250514", "max_tokens": 1024, "stream": true,
		"system":   "You are a concise assistant.",
		"messages": []map[string]any{{"role": "user", "content": []map[string]string{{"type": "text", "text": "Hello, Claude. What's the capital of Japan?"}}}},
	})
	mcpInit := mustJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-06-18",
		"capabilities":    map[string]any{"roots": map[string]bool{"listChanged": true}, "sampling": map[string]any{}, "elicitation": map[string]any{}},
		"clientInfo":      map[string]string{"name": "claude-code", "version": "1.0.17"},
	}})
	mcpCall := mustJSON(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": map[string]any{
		"name": "search_docs", "arguments": map[string]any{"query": "how to rotate the session key", "limit": 5},
		"_meta": map[string]any{"progressToken": 7},
	}})
	mcpNotify := []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	upload, uploadCT := multipartUpload()
	return []struct {
		name string
		req  clientReq
	}{
		{"curl_get", clientReq{path: "/", header: map[string]string{"User-Agent": "curl/8.11.1", "Accept": "*/*"}}},
		{"curl_get_by_ip_address", clientReq{path: "/healthz?verbose=1", host: "-", header: map[string]string{"User-Agent": "curl/8.11.1", "Accept": "*/*"}}},
		{"curl_post_json_expect_100_continue", clientReq{method: "POST", path: "/v1/chat/completions", body: bigChat,
			header: map[string]string{"User-Agent": "curl/8.11.1", "Accept": "*/*", "Content-Type": "application/json", "Expect": "100-continue",
				"Authorization": "Bearer sk-proj-4fJ2kD9sL0qW8eR7tY6uI5oP3aS1dF2gH4jK6lZ8xC0vB9nM7"}}},
		{"curl_upload_from_stdin_expect_100_continue_chunked", clientReq{method: "PUT", path: "/api/datasets/42", body: bigChat, chunked: true,
			header: map[string]string{"User-Agent": "curl/8.11.1", "Accept": "*/*", "Content-Type": "application/json", "Expect": "100-continue"}}},
		{"dotnet_post_expect_100_continue_mixed_case", clientReq{method: "POST", path: "/v1/chat/completions", body: bigChat,
			header: map[string]string{"User-Agent": "MyApp/2.1 (.NET 8.0)", "Accept": "application/json", "Content-Type": "application/json; charset=utf-8", "Expect": "100-Continue"}}},
		{"go_client_default", clientReq{path: "/api/v1/status", header: map[string]string{"Accept-Encoding": "gzip"}}},
		{"chrome_navigation", clientReq{path: "/chat/8d0c6f2e-3b1a-4c8e-9f6d-2a7b5c4e1d90", header: chromeNav}},
		{"chrome_navigation_h2", clientReq{path: "/chat/8d0c6f2e-3b1a-4c8e-9f6d-2a7b5c4e1d90", header: chromeNav, h2: true}},
		{"firefox_navigation_h2", clientReq{path: "/", header: firefoxNav, h2: true}},
		{"chrome_fetch_post_json_h2", clientReq{method: "POST", path: "/console/api/apps/3f2a/chat-messages", body: chat, header: chromeFetch, h2: true}},
		{"chrome_fetch_delete_h2", clientReq{method: "DELETE", path: "/console/api/conversations/8d0c6f2e", header: chromeFetch, h2: true}},
		{"chrome_fetch_patch_json_h2", clientReq{method: "PATCH", path: "/console/api/apps/3f2a", body: []byte(`{"name":"Support bot (v2)","icon":"🤖"}`), header: chromeFetch, h2: true}},
		{"chrome_static_asset_h2", clientReq{path: "/_next/static/chunks/app/page-8f3a1c.js", h2: true, header: with(chromeNav,
			"Accept", "*/*", "Sec-Fetch-Dest", "script", "Sec-Fetch-Mode", "no-cors", "Priority", "u=1")}},
		{"openai_python_chat_stream", clientReq{method: "POST", path: "/v1/chat/completions", body: chat, header: openaiPython}},
		{"openai_python_chat_stream_h2", clientReq{method: "POST", path: "/v1/chat/completions", body: chat, header: openaiPython, h2: true}},
		{"openai_node_chat", clientReq{method: "POST", path: "/v1/chat/completions", body: chat, header: openaiNode}},
		{"openai_node_delete_file", clientReq{method: "DELETE", path: "/v1/files/file-abc123", header: openaiNode}},
		{"openai_python_list_models", clientReq{path: "/v1/models", header: with(openaiPython, "Content-Type", "")}},
		{"anthropic_python_messages", clientReq{method: "POST", path: "/v1/messages", body: claude, header: anthropicPython}},
		{"anthropic_python_messages_h2", clientReq{method: "POST", path: "/v1/messages?beta=true", body: claude, header: anthropicPython, h2: true}},
		{"sse_get", clientReq{path: "/v1/events/stream", header: map[string]string{"User-Agent": chromeNav["User-Agent"], "Accept": "text/event-stream",
			"Cache-Control": "no-cache", "Last-Event-Id": "1736467200-42", "Cookie": chromeNav["Cookie"], "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}}},
		{"sse_get_h2", clientReq{path: "/v1/events/stream", h2: true, header: map[string]string{"User-Agent": chromeNav["User-Agent"], "Accept": "text/event-stream", "Cache-Control": "no-cache"}}},
		{"websocket_upgrade", clientReq{path: "/ws/chat?room=general", header: map[string]string{
			"User-Agent": chromeNav["User-Agent"], "Connection": "Upgrade", "Upgrade": "websocket",
			"Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version": "13",
			"Sec-Websocket-Extensions": "permessage-deflate; client_max_window_bits", "Sec-Websocket-Protocol": "chat, superchat",
			"Origin": "https://app.example.com", "Cookie": chromeNav["Cookie"], "Cache-Control": "no-cache", "Pragma": "no-cache"}}},
		{"mcp_initialize", clientReq{method: "POST", path: "/mcp", body: mcpInit, header: with(mcpClient, "Mcp-Session-Id", "")}},
		{"mcp_notification", clientReq{method: "POST", path: "/mcp", body: mcpNotify, header: mcpClient}},
		{"mcp_tools_call_h2", clientReq{method: "POST", path: "/mcp", body: mcpCall, header: mcpClient, h2: true}},
		{"mcp_stream_get", clientReq{path: "/mcp", header: with(mcpClient, "Accept", "text/event-stream", "Content-Type", "")}},
		{"mcp_session_delete", clientReq{method: "DELETE", path: "/mcp", header: with(mcpClient, "Content-Type", "")}},
		{"multipart_upload", clientReq{method: "POST", path: "/v1/files", body: upload, header: with(chromeFetch, "Content-Type", uploadCT)}},
		{"multipart_upload_h2", clientReq{method: "POST", path: "/v1/files", body: upload, h2: true, header: with(openaiPython, "Content-Type", uploadCT)}},
		{"form_login_post", clientReq{method: "POST", path: "/.sekisho/login", body: []byte("username=alice%40example.com&password=correct+horse+battery+staple&next=%2Fchat"),
			header: with(chromeNav, "Content-Type", "application/x-www-form-urlencoded", "Origin", "https://app.example.com", "Cache-Control", "max-age=0")}},
	}
}

// defaultWAFs are the embedded defaults an operator gets: the zero Options
// and the zero Options with JSON parsing, as the README's LLM example has.
var defaultWAFs = []struct {
	name string
	w    *lazyWAF
}{{"zero_options", noJSONWAF}, {"parse_json", baseWAF}}

func TestOrdinaryClientsPassTheDefaultWAF(t *testing.T) {
	for _, d := range defaultWAFs {
		t.Run(d.name, func(t *testing.T) {
			s := newClientServer(t, d.w.get(t))
			for _, tc := range ordinaryClients() {
				t.Run(tc.name, func(t *testing.T) {
					got := s.send(t, tc.req)
					if got.Verdict.Matched {
						t.Errorf("ordinary request refused: %s: CRS %v (score %d)", got.Verdict.Message, got.Verdict.RuleIDs, got.Verdict.Score)
					}
				})
			}
		})
	}
}
