package route

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pathnorm"
	"github.com/sekisho/sekisho/internal/redirect"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/upstream"
	"github.com/sekisho/sekisho/internal/web"
)

// Route is one configured route at run time.
type Route struct {
	// Name is the route's config name and the assertion's audience.
	Name string
	// Policy decides who may pass (authz.CompileRoute: the route's policy
	// and its auth.max_age).
	Policy *authz.Policy
	// Upstream serves allowed requests: a streaming reverse proxy whose
	// Rewrite hook is the Pipeline's Rewrite.
	Upstream http.Handler
	// Rules are the gateway's and the route's security rules, merged. nil:
	// none (nothing is evaluated).
	Rules *rules.Set
	// AllowedOrigins, when not empty, are the only origins a request's
	// Origin header may name ("https://app.example.com"); any other Origin,
	// "null" included, is refused with 403. OwnOrigin adds the origin of
	// the request itself (scheme and Host), for routes with an exact host;
	// a wildcard host's own origin is the client's to choose, so a
	// DNS-rebinding page would always pass that check. Empty: no check.
	AllowedOrigins []string
	OwnOrigin      bool
	// AllowedHosts, on a wildcard-host route with AllowedOrigins, are the
	// host names of those origins (lower case, no port): the only Host such
	// a route answers. A DNS-rebinding page makes same-origin requests,
	// which carry no Origin on GET, under its own name; this is what turns
	// it away. Empty: no Host check.
	AllowedHosts []string
}

// Authenticator finds who made a request (authn.Authenticator): told the
// route, it returns the identity and the header that carried sekisho's
// credential; the anonymous identity (and no error) when the request
// carries no credential; an error means a credential was present but
// refused, which the pipeline logs and then treats as anonymous. It may
// write headers (a refreshed session cookie).
type Authenticator = authn.Authenticator

// Signer mints the assertion JWT for a route's audience.
type Signer interface {
	Sign(audience string, id identity.Identity) (string, error)
}

// ClientResolver finds the client's address and the scheme and host it used,
// believing forwarding headers only from trusted proxies.
type ClientResolver interface {
	ClientIP(r *http.Request) (netip.Addr, error)
	Proto(r *http.Request) string
	Host(r *http.Request) string
}

// Observer records one finished request (Prometheus metrics). nil: none.
type Observer interface {
	Observe(route, decision string, status int, elapsed time.Duration)
}

// Pipeline is the request path: resolve the client, normalise the path,
// route, authenticate, authorize, forward, audit. It is an http.Handler.
type Pipeline struct {
	Router  *Router[*Route]
	Portal  web.Endpoint
	Authn   Authenticator
	Signer  Signer
	Clients ClientResolver
	Audit   *audit.Logger
	Metrics Observer
	// OwnCookies are sekisho's cookie names outside its "sekisho*"
	// namespace (every name inside it is sekisho's anyway): removed from
	// requests before forwarding and from the app's Set-Cookie headers.
	OwnCookies []string
	// StripHeaders are request headers removed before forwarding besides
	// the built-in list (config strip_headers). Zero value: none.
	StripHeaders StripList
	// PortalRules are the gateway's own rules (config rules, without any
	// route's), run in the edge phase before the gateway's endpoints under
	// /.sekisho/ (sign-in, sign-out, the OIDC callback), so an IP rule, a
	// ban, a rate limit or the WAF covers password guessing too. The health
	// check and the key set are exempt: load balancers and apps fetch them.
	// nil: no rules.
	PortalRules *rules.Set
	Logger      *slog.Logger
	Now         func() time.Time
	// ReAuth returns where to send a browser whose sign-in is older than a
	// route's max_age, for identities from an OIDC provider; false means
	// the sign-in page (local accounts). nil: always the sign-in page.
	ReAuth func(provider, next string, maxAge time.Duration) (string, bool)
	// Streams, when set, is told of every open stream of an allowed
	// request (through the upstream proxy's OnStream, which must be
	// p.OnStream). nil: streams are not tracked.
	Streams StreamTracker
}

// exchange is one request's way through the pipeline, in one allocation:
// what the audit line needs, the recorder the response goes through and,
// once the request is allowed, what Rewrite forwards. The request's context
// carries it (forwardKey), so Rewrite finds it on the proxy's side.
type exchange struct {
	start time.Time
	// req is the request the pipeline works on and forwards: the client's,
	// with a context that carries this exchange and the request's Info.
	req *http.Request
	// info is own, unless the caller handed in an Info of its own.
	info *reqinfo.Info
	own  reqinfo.Info
	rec  recorder
	// route is the matched route, nil before routing.
	route *Route
	// allowed is set when the pipeline decided to forward; until then the
	// fields below are empty and Rewrite vouches for nothing.
	allowed bool
	fw      forward
	// parent is the client request's context; the exchange is the context
	// of x.req, answering for forwardKey and the request's Info itself
	// (one allocation fewer than two context.WithValue).
	parent  context.Context
	ownInfo bool
	ipText  string // x.clientIP()
}

// Deadline, Done, Err and Value make the exchange x.req's context.
func (x *exchange) Deadline() (time.Time, bool) { return x.parent.Deadline() }
func (x *exchange) Done() <-chan struct{}       { return x.parent.Done() }
func (x *exchange) Err() error                  { return x.parent.Err() }
func (x *exchange) Value(k any) any {
	switch {
	case k == forwardKey{}:
		return x
	case x.ownInfo && reqinfo.IsKey(k):
		return x.info
	}
	return x.parent.Value(k)
}

// forward is what Rewrite needs from the inbound request.
type forward struct {
	id      identity.Identity
	clean   string
	escaped string
	proto   string
	host    string
	// addHeaders come from the allow rule that matched.
	addHeaders http.Header
	// credentialHeader carried sekisho's own credential: removed upstream.
	credentialHeader string
}

type forwardKey struct{}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// ServeHTTP runs one request down the road.
//
// It stays small on purpose. A stream's connection goroutine is blocked
// under this frame, inside the upstream proxy's copy loop, for as long as
// the stream lasts, and it writes the response's first bytes from there:
// every byte of this frame is paid on that goroutine's stack, and a few
// hundred more double it from 8 to 16 KiB per open stream. So the decision,
// with all its locals (routing, rules, authentication, policy), is made in
// admit, which returns before the request is forwarded, and nothing here
// holds more than a few pointers. TestIdleStreamStack (internal/server)
// guards this.
func (p *Pipeline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := p.begin(w, r)
	defer p.finish(x)
	if p.admit(x) {
		x.route.Upstream.ServeHTTP(&x.rec, x.req)
	}
}

// begin makes the request's exchange.
//
//go:noinline
func (p *Pipeline) begin(w http.ResponseWriter, r *http.Request) *exchange {
	x := &exchange{start: p.now()}
	// A caller may hand in its own Info (policy tests read the decision
	// from it); otherwise each request gets a fresh one.
	x.parent = r.Context()
	info, ok := reqinfo.Lookup(x.parent)
	if !ok || info.ID == "" {
		x.own.ID = reqinfo.NewID()
		info, x.ownInfo = &x.own, true
	}
	x.info = info
	// Everything is the gateway's answer until the request is handed to an
	// upstream; UpstreamError marks its own answers again.
	x.rec = recorder{ResponseWriter: w, generated: true}
	x.rec.Header().Set(HeaderRequestID, info.ID)
	x.req = r.WithContext(x)
	return x
}

// admit decides what becomes of the request: it answers it itself (an
// error page, a sign-in redirect, a rule's answer, the portal) and returns
// false, or fills in x.fw and returns true for the request to be forwarded
// to x.route's upstream.
//
//go:noinline
func (p *Pipeline) admit(x *exchange) bool {
	r, info, rec := x.req, x.info, &x.rec
	ip, err := p.Clients.ClientIP(r)
	if err != nil {
		info.Decision, info.Reason = "deny", "malformed forwarding header from a trusted proxy: "+err.Error()
		web.Error(rec, r, http.StatusBadRequest, "The request's forwarding headers are malformed.")
		return false
	}
	info.ClientIP = ip
	clean, escaped, err := pathnorm.Normalize(r.URL.EscapedPath())
	if err != nil {
		info.Decision, info.Reason = "deny", "path refused: "+err.Error()
		web.Error(rec, r, http.StatusBadRequest, "The request path is not valid.")
		return false
	}
	info.Path = clean
	if strings.HasPrefix(clean, web.Prefix) || clean == strings.TrimSuffix(web.Prefix, "/") {
		r.URL.Path, r.URL.RawPath = clean, ""
		if p.PortalRules != nil && !portalExempt(clean) {
			res := p.PortalRules.Default(p.PortalRules.Eval(r.Context(), rules.PhaseEdge, p.ruleInput(r, ip, clean)))
			if p.applyRules(rec, r, info, res) {
				return false
			}
		}
		out := p.Portal.Serve(rec, r)
		info.Decision, info.Reason = out.Decision, out.Reason
		if info.Decision == "" {
			info.Decision = "gateway"
		}
		info.User, info.Kind, info.Provider = out.User, out.Kind, out.Provider
		return false
	}
	rt, ok := p.Router.Match(r.Host, clean)
	if !ok {
		info.Decision, info.Reason = "deny", "no route for this host and path"
		web.Error(rec, r, http.StatusNotFound, "There is no app at this address.")
		return false
	}
	info.Route = rt.Name
	if len(rt.AllowedHosts) > 0 && !slices.Contains(rt.AllowedHosts, CanonicalHost(r.Host)) {
		info.Decision, info.Reason = "deny", "host "+strconvQuote(r.Host)+" is not the host of an allowed origin (DNS rebinding; route allowed_origins)"
		web.Error(rec, r, http.StatusForbidden, "Requests for this host name are not allowed.")
		return false
	}
	if len(rt.AllowedOrigins) > 0 {
		if o := r.Header.Values("Origin"); len(o) > 0 && !p.originAllowed(rt, r, o) {
			info.Decision, info.Reason = "deny", "foreign Origin "+strconvQuote(o[0])+" (route allowed_origins)"
			web.Error(rec, r, http.StatusForbidden, "Requests from this origin are not allowed.")
			return false
		}
	}
	var in *rules.Input
	var addHeaders http.Header
	edgeMatched := false
	if rt.Rules != nil {
		in = p.ruleInput(r, ip, clean)
		res := rt.Rules.Eval(r.Context(), rules.PhaseEdge, in)
		if p.applyRules(rec, r, info, res) {
			return false
		}
		edgeMatched, addHeaders = res.Action != rules.ActionNone, res.AddHeaders
	}
	res, err := p.Authn.Authenticate(rec, r, authn.Request{Route: rt.Name})
	id := res.Identity
	req := authz.Request{Method: r.Method, Path: clean, Now: p.now()}
	d := rt.Policy.DecideRequest(id, req)
	if d.Refused != nil {
		// The credential is not valid for this request (a key's scope):
		// the request goes on as one whose credential failed, anonymous.
		err, id = d.Refused, identity.Identity{}
		d = rt.Policy.DecideRequest(id, req)
	}
	if err != nil {
		p.Logger.Debug("credential refused", "request_id", info.ID, "err", err)
	}
	if id.Authenticated() {
		info.User, info.Kind, info.Provider = id.User, string(id.Kind), id.Provider
	}
	info.Reason = d.Reason
	switch {
	case d.NeedsLogin && err != nil:
		info.Reason = "credential refused: " + err.Error()
		if status, code, msg, ok := refusal(err); ok {
			info.Decision = "deny"
			web.ErrorJSONCode(rec, r, status, code, msg)
			return false
		}
		fallthrough
	case d.NeedsLogin:
		if !web.FollowsSignIn(r) {
			info.Decision = "deny"
			web.ErrorJSON(rec, r, http.StatusUnauthorized, "Sign-in required: send a valid credential.")
			return false
		}
		info.Decision = "login"
		target := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		loc := redirect.LoginURL(target)
		if maxAge := rt.Policy.MaxAge(); id.Authenticated() && maxAge > 0 && p.ReAuth != nil {
			if u, ok := p.ReAuth(id.Provider, target, maxAge); ok {
				loc = u
			}
		}
		rec.Header().Set("Cache-Control", "no-store")
		http.Redirect(rec, r, loc, http.StatusFound)
		return false
	case !d.Allow:
		info.Decision = "deny"
		web.Error(rec, r, http.StatusForbidden, "You are signed in, but this app does not allow your account.")
		return false
	}
	if in != nil && !edgeMatched {
		in.Identity = &id
		if id.Kind == identity.APIKey {
			in.APIKeyID = id.SessionID
		}
		res := rt.Rules.Eval(r.Context(), rules.PhaseIdentity, in)
		if p.applyRules(rec, r, info, res) {
			return false
		}
		addHeaders = res.AddHeaders
	}
	info.Decision = "allow"
	x.route = rt
	x.fw = forward{addHeaders: addHeaders, id: id, clean: clean, escaped: escaped, credentialHeader: res.CredentialHeader,
		proto: p.Clients.Proto(r), host: p.Clients.Host(r)}
	x.allowed = true
	rec.generated = false
	return true
}

// Rewrite is the upstream proxy's hook: it builds the outbound request from
// what the pipeline decided. The client never speaks for the gateway: every
// owned header is removed before sekisho sets its own.
func (p *Pipeline) Rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	stripOwned(out.Header, &p.StripHeaders)
	stripCookies(out.Header, p.OwnCookies...)
	out.Header.Del("Proxy-Authorization") // sekisho's own credential header, never the app's
	x, ok := pr.In.Context().Value(forwardKey{}).(*exchange)
	if !ok || !x.allowed {
		return // not from the pipeline (cannot happen in the server); nothing is vouched for
	}
	fw := &x.fw
	if h := x.fw.credentialHeader; h != "" {
		out.Header.Del(h)
	}
	out.URL.Path = fw.clean
	out.URL.RawPath = ""
	if fw.escaped != fw.clean {
		out.URL.RawPath = fw.escaped
	}
	h := out.Header
	for k, vs := range fw.addHeaders {
		h[k] = append([]string(nil), vs...)
	}
	hs := headerSetter{h: h, vals: make([]string, 0, 8)}
	hs.set("X-Forwarded-For", x.clientIP())
	hs.set("X-Forwarded-Proto", fw.proto)
	hs.set("X-Forwarded-Host", fw.host)
	hs.set(HeaderRequestID, x.info.ID)
	if !fw.id.Authenticated() {
		return
	}
	hs.set(HeaderUser, headerSafe(fw.id.User))
	if fw.id.Email != "" {
		hs.set(HeaderEmail, headerSafe(fw.id.Email))
	}
	if len(fw.id.Groups) > 0 {
		hs.set(HeaderGroups, headerSafe(strings.Join(fw.id.Groups, ",")))
	}
	if p.Signer != nil {
		tok, err := p.Signer.Sign(x.route.Name, fw.id)
		if err != nil {
			// The app gets no assertion rather than a request without one
			// silently looking vouched for; log loudly.
			p.Logger.Error("sign assertion", "route", x.route.Name, "request_id", x.info.ID, "err", err)
			return
		}
		hs.set(HeaderAssertion, tok)
	}
}

// ModifyResponse is the upstream proxy's response hook: an app never sets
// the gateway's cookies. Every Set-Cookie for a name in sekisho's namespace
// (or OwnCookies, or a nameless cookie that reads as one) is removed before
// the browser sees it, and so is a Clear-Site-Data that clears cookies, so
// one app cannot plant, replace or clear through its headers the session
// that every other route trusts.
func (p *Pipeline) ModifyResponse(res *http.Response) error {
	if n := stripSetCookies(res.Header, p.OwnCookies); n > 0 {
		info := reqinfo.From(res.Request.Context())
		info.RuleNotes = joinNote(info.RuleNotes, "removed the app's Set-Cookie for the gateway's cookie")
		p.Logger.Warn("the app tried to set the gateway's cookie; removed", "request_id", info.ID, "route", info.Route, "count", n)
	}
	if res.Header["Clear-Site-Data"] != nil && stripClearSiteData(res.Header) {
		info := reqinfo.From(res.Request.Context())
		info.RuleNotes = joinNote(info.RuleNotes, "removed the app's Clear-Site-Data cookies")
		p.Logger.Warn("the app tried to clear the site's cookies, the gateway's session with them; removed", "request_id", info.ID, "route", info.Route)
	}
	return nil
}

// ruleInput is what the rules see of a request: the client's address, the
// normalised path, the canonical host.
func (p *Pipeline) ruleInput(r *http.Request, ip netip.Addr, clean string) *rules.Input {
	return &rules.Input{IP: ip, Method: r.Method, Path: clean, Host: CanonicalHost(r.Host), Scheme: p.Clients.Proto(r),
		Query: r.URL.Query(), Header: r.Header, Cookie: cookieValue(r), Request: r}
}

// portalExempt reports whether a gateway endpoint answers before the edge
// rules: the health check (load balancers probe it from their own ranges,
// which an IP rule must not turn into "every replica is down") and the
// public key set (apps fetch it to verify the assertion).
func portalExempt(clean string) bool {
	return clean == web.Prefix+"healthz" || clean == web.Prefix+"jwks.json"
}

// originAllowed reports whether the request's Origin header(s) name only
// allowed origins. Browsers send one; several, or "null", never pass.
func (p *Pipeline) originAllowed(rt *Route, r *http.Request, origins []string) bool {
	if len(origins) != 1 {
		return false
	}
	o := strings.ToLower(origins[0])
	if slices.Contains(rt.AllowedOrigins, o) {
		return true
	}
	return rt.OwnOrigin && o == p.Clients.Proto(r)+"://"+strings.ToLower(r.Host)
}

func strconvQuote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return strconv.Quote(s)
}

// headerSetter sets single-valued headers whose names are in canonical form
// (TestHeaderNamesCanonical) from one backing array: one allocation for all
// of a request's identity headers instead of one each.
type headerSetter struct {
	h    http.Header
	vals []string
}

func (s *headerSetter) set(canonical, v string) {
	s.vals = append(s.vals, v)
	n := len(s.vals)
	s.h[canonical] = s.vals[n-1 : n : n]
}

// clientIP is the client's address as text, made once for the upstream
// header and the audit line.
func (x *exchange) clientIP() string {
	if x.ipText == "" {
		x.ipText = x.info.ClientIP.String()
	}
	return x.ipText
}

// finish records the request's outcome: metrics and the audit line. It
// runs when the response is done, a stream's included.
func (p *Pipeline) finish(x *exchange) {
	r, rec, info, start := x.req, &x.rec, x.info, x.start
	elapsed := p.now().Sub(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		if rec.hijacked {
			status = http.StatusSwitchingProtocols
		}
	}
	if p.Metrics != nil {
		p.Metrics.Observe(info.Route, info.Decision, status, elapsed)
	}
	if info.Reason == "health check" || info.Reason == "key set" {
		return // probes would drown the decision log
	}
	reason := info.Reason
	if info.RuleNotes != "" {
		reason = joinNote(reason, info.RuleNotes)
	}
	path := info.Path
	if path == "" {
		path = "(not normalised) " + strings.ToValidUTF8(r.URL.EscapedPath(), "?")
	}
	p.Audit.Log(&audit.Entry{
		Time: start.UTC(), RequestID: info.ID, Route: info.Route, Host: r.Host, Method: r.Method,
		Path: path, ClientIP: x.clientIP(), User: info.User, Kind: info.Kind, Provider: info.Provider,
		Decision: info.Decision, Reason: reason, Rule: info.Rule, Preview: info.Preview,
		Status: status, Bytes: rec.bytes, Duration: elapsed.Microseconds(),
	})
}

// UpstreamError is the upstream proxy's ErrorHandler: 502 when the upstream
// failed, 503 when no healthy upstream remains (or the gateway ran out of
// file descriptors), 504 when it was too slow. The client gets a page or
// JSON with the request id; the cause goes to the log and the audit line.
// The client's own failures are the client's: 499 when it left before the
// answer (nothing is sent: nobody reads it), 408 when it sent its body too
// slowly, 400 or 413 for a body it broke or made too large; they are logged
// at debug, never as an upstream failure.
func (p *Pipeline) UpstreamError(w http.ResponseWriter, r *http.Request, status int, err error) {
	if rec, ok := w.(*recorder); ok {
		rec.generated = true
	}
	info := reqinfo.From(r.Context())
	switch status {
	case upstream.StatusClientClosedRequest, http.StatusRequestTimeout, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		info.Reason += "; the client's request failed: " + err.Error()
		p.Logger.Debug("client request failed", "request_id", info.ID, "route", info.Route, "status", status, "err", err)
		switch status {
		case upstream.StatusClientClosedRequest:
			w.WriteHeader(status) // for the audit line and metrics; the client is gone
		case http.StatusRequestTimeout:
			w.Header().Set("Connection", "close")
			web.Error(w, r, status, "The request body arrived too slowly.")
		case http.StatusRequestEntityTooLarge:
			web.Error(w, r, status, "The request body is too large.")
		default:
			web.Error(w, r, status, "The request body is malformed.")
		}
		return
	}
	info.Reason += "; upstream failed: " + err.Error()
	if errors.Is(err, upstream.ErrGatewayOverloaded) {
		p.Logger.Error("gateway out of resources", "request_id", info.ID, "route", info.Route, "err", err)
		web.Error(w, r, status, "The gateway is overloaded. Try again in a moment.")
		return
	}
	p.Logger.Warn("upstream error", "request_id", info.ID, "route", info.Route, "status", status, "err", err)
	msg := "The app did not answer properly. Try again in a moment."
	switch status {
	case http.StatusServiceUnavailable:
		msg = "The app is unavailable: no healthy server is left to answer. Try again later."
	case http.StatusGatewayTimeout:
		msg = "The app took too long to answer."
	}
	web.Error(w, r, status, msg)
}

// Stream is an open stream the pipeline let through: an event stream or
// an upgraded connection (WebSocket), described well enough to decide
// again whether it may go on (after a config reload, a sign-out).
type Stream struct {
	// Route is the name of the route that admitted it; Host and Path (the
	// normalised path) are what it was routed by.
	Route, Host, Path string
	// Method is the request's method (an upgrade's GET).
	Method string
	// RequestID is the id of the request that opened it.
	RequestID string
	// Identity is who opened it.
	Identity identity.Identity
	// End ends the stream with cause (an event stream finishes cleanly, an
	// upgraded connection is closed). Safe to call more than once.
	End func(cause error)
}

// StreamTracker keeps the open streams. Track is called when a response
// turns out to be a stream and returns what forgets it when it ends; it
// must not block.
type StreamTracker interface {
	Track(*Stream) (forget func())
}

// OnStream is the upstream proxy's OnStream hook: it hands the stream of
// an allowed request to p.Streams. r is the request the pipeline forwarded.
func (p *Pipeline) OnStream(r *http.Request, end func(cause error)) func() {
	x, ok := r.Context().Value(forwardKey{}).(*exchange)
	if !ok || p.Streams == nil || !x.allowed {
		return nil
	}
	return p.Streams.Track(&Stream{Route: x.route.Name, Host: r.Host, Path: x.fw.clean, Method: r.Method, RequestID: x.info.ID, Identity: x.fw.id, End: end})
}
