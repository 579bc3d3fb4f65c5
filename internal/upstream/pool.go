// Package upstream holds sekisho's upstream pools (target selection, active
// health checks, passive ejection, retries) and the streaming reverse proxy
// that forwards a request to a pool.
//
// A [Pool] is an [http.RoundTripper]: it picks a target for each request,
// rewrites the request URL to it and sends it: to a plain-http target with
// sekisho's own HTTP/1.1 client (h1.go), which writes the request and reads
// the response on the caller's goroutine, otherwise through the pool's
// [http.Transport].
// [NewProxy] wraps a Pool in an [httputil.ReverseProxy] with the timeouts
// LLM apps need: a total timeout for normal responses, none for streams
// (Server-Sent Events, WebSocket), which get an idle timeout instead.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoHealthyUpstream is returned by [Pool.RoundTrip] when every target of
// the pool is unhealthy (active health check) or ejected (passive), or when
// every target that was tried failed to connect. The proxy answers it with 503.
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// Balance values for [PoolOptions.Balance].
const (
	// RoundRobin sends each request to the next available target in turn.
	RoundRobin = "round_robin"
	// LeastRequests sends each request to the available target with the
	// fewest requests in flight (streams count while they are open); ties go
	// round robin.
	LeastRequests = "least_requests"
)

// Defaults applied by [NewPool] when a field is zero.
const (
	DefaultMaxFails = 3
	DefaultEjectFor = 30 * time.Second
	// MaxRetries caps [PoolOptions.Retries].
	MaxRetries = 3
)

// PoolOptions configures a [Pool]. Zero values mean the documented defaults.
type PoolOptions struct {
	// Name names the pool in errors, logs and metrics. Required.
	Name string
	// Targets are the upstream base URLs: scheme http or https, a host, and
	// optionally a base path that is joined with the request path
	// ("http://h/base" + "/x" = "http://h/base/x"). Query, fragment and
	// credentials (user:pass@) are rejected: set upstream credentials as
	// headers in the route instead, so they never show in logs or status.
	// At least one is required.
	Targets []*url.URL
	// Balance is RoundRobin ("round_robin", the default when "") or
	// LeastRequests ("least_requests").
	Balance string
	// HealthCheck configures active health checks. nil: no active checks,
	// every target is healthy (passive ejection still applies).
	HealthCheck *HealthCheck
	// MaxFails is how many consecutive connection failures eject a target
	// (passive health). 0 means DefaultMaxFails (3); negative turns passive
	// ejection off. Any response from the target, whatever its status,
	// resets the count.
	MaxFails int
	// EjectFor is how long an ejected target gets no traffic. 0 means
	// DefaultEjectFor (30s). When it expires the target is tried again, and a
	// single further failure ejects it again; a success clears it. With
	// active health checks, HealthCheck.HealthyThreshold passing checks in a
	// row, all made after the ejection began, end it early (the same rule:
	// tried again, a single failure ejects it again).
	//
	// Only failures the upstream caused count: a connection refused, reset
	// or closed before the response, a malformed response, a 101 nobody
	// asked for. Not the client's (a malformed, aborted or too slow request
	// body, a client that left), not the proxy's timeouts, and not the
	// gateway running out of file descriptors or memory.
	EjectFor time.Duration
	// Retries is how many extra attempts, each on a different target, an
	// idempotent request gets when its connection was never established
	// (dial refused, unreachable, DNS), also when, as with http.Transport,
	// a GET (HEAD, OPTIONS, TRACE) without a body met a kept-alive
	// connection the target had just closed and the new connection to it
	// could not be made. 0 means len(Targets)-1; negative
	// means none. Capped at len(Targets)-1 and at MaxRetries (3).
	// Idempotent: GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110) or an
	// Idempotency-Key header, with no body or one re-gettable via GetBody.
	Retries int
	// Transport sends the health checks, and the requests that sekisho's
	// own HTTP/1.1 client does not take: those to https targets, upgrades
	// (WebSocket), Expect: 100-continue, and bodies of unknown length or
	// over 64 KiB (and every request on systems other than Unix). The own
	// client sends the rest, on connections it dials with Transport's
	// DialContext; Transport's other settings (Proxy, timeouts, limits,
	// keep-alives) do not apply to those. A connection that DialContext
	// returns without a file descriptor serves one request and is closed.
	// It is used as given, never modified. nil means NewTransport().
	Transport *http.Transport
	// Now is the clock for ejection times. nil means time.Now.
	Now func() time.Time
	// Logger receives health transitions and ejections. nil discards.
	Logger *slog.Logger
	// TargetHeader, when set, gives a header to send to a target with
	// every request and health check (a Google-signed ID token for a
	// Cloud Run service: X-Serverless-Authorization). It is called per
	// attempt with the target's base URL and must be fast (cached). An
	// error fails the request with 502 without counting against the
	// target.
	TargetHeader func(ctx context.Context, target *url.URL) (name, value string, err error)
}

// NewTransport returns the transport a pool uses when PoolOptions.Transport
// is nil: a keep-alive pool of up to 256 idle connections per host kept for
// 90s, a 10s dial and TLS handshake timeout, no response header timeout (the
// proxy's per-route timeout handles it), no environment proxy, no transparent
// compression (bytes pass through as the upstream sent them), and HTTP/1.1 to
// the upstream so WebSocket upgrades work over https too.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:            newDialer().DialContext,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		DisableCompression:     true,
	}
}

// newDialer is how a pool dials its targets: a 10s timeout and TCP
// keep-alive probes every 30s.
func newDialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
}

// TargetStatus is a snapshot of one target, for /healthz and metrics.
type TargetStatus struct {
	// URL is the target's base URL.
	URL string
	// Healthy is the active health-check state (true without health checks).
	Healthy bool
	// Available reports whether the target receives traffic now: healthy
	// and not ejected. The metric sekisho_upstream_healthy reports this.
	Available bool
	// EjectedUntil is when a passive ejection ends; zero when not ejected.
	EjectedUntil time.Time
	// Inflight is the number of requests sent to the target whose response
	// body is not yet closed.
	Inflight int64
	// LastError is the last health-check or connection error, "" if none.
	LastError string
}

// Pool is a set of upstream targets with health state. It is an
// [http.RoundTripper]; use it from many goroutines at once.
type Pool struct {
	name      string
	targets   []*target
	leastReq  bool
	transport *http.Transport
	hc        *HealthCheck // with defaults applied; nil: no active checks
	maxFails  int32        // 0: passive ejection off
	ejectFor  time.Duration
	retries   int
	now       func() time.Time
	log       *slog.Logger
	header    func(context.Context, *url.URL) (string, string, error)

	next    atomic.Uint64
	started atomic.Bool
}

type target struct {
	url *url.URL
	// h1 is the target's own HTTP/1.1 client (h1.go); nil for https.
	h1       *h1Conns
	health   *url.URL // health-check URL; nil without active checks
	inflight atomic.Int64
	healthy  atomic.Bool
	fails    atomic.Int32 // consecutive passive failures
	ejected  atomic.Int64 // ejection end in UnixNano; 0: never ejected

	mu      sync.Mutex // guards the fields below, and ejections (failed)
	hcOK    int        // consecutive passing checks
	hcFail  int        // consecutive failing checks
	ejOK    int        // consecutive passing checks since the ejection began
	lastErr string
}

// NewPool validates opts and returns a pool whose targets are all healthy
// until the first health check ([Pool.Start]) says otherwise. The error
// names the pool and every bad field or target.
func NewPool(opts PoolOptions) (*Pool, error) {
	var errs []error
	if opts.Name == "" {
		errs = append(errs, errors.New("upstream pool: name is empty"))
	}
	prefix := fmt.Sprintf("upstream pool %q", opts.Name)
	if len(opts.Targets) == 0 {
		errs = append(errs, fmt.Errorf("%s: no targets", prefix))
	}
	p := &Pool{
		name:      opts.Name,
		transport: opts.Transport,
		now:       opts.Now,
		log:       opts.Logger,
		ejectFor:  opts.EjectFor,
		header:    opts.TargetHeader,
	}
	seen := make(map[string]bool, len(opts.Targets))
	for i, u := range opts.Targets {
		if err := checkTarget(u); err != nil {
			errs = append(errs, fmt.Errorf("%s: target %d: %w", prefix, i+1, err))
			continue
		}
		key := u.String()
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s: target %q is listed twice", prefix, key))
			continue
		}
		seen[key] = true
		t := &target{url: u}
		t.healthy.Store(true)
		p.targets = append(p.targets, t)
	}
	switch opts.Balance {
	case "", RoundRobin:
	case LeastRequests:
		p.leastReq = true
	default:
		errs = append(errs, fmt.Errorf("%s: balance %q is not %q or %q", prefix, opts.Balance, RoundRobin, LeastRequests))
	}
	if opts.HealthCheck != nil {
		hc, err := opts.HealthCheck.withDefaults()
		var ref *url.URL
		if err == nil {
			ref, err = url.ParseRequestURI(hc.Path)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: health check: %w", prefix, err))
		} else {
			p.hc = hc
			for _, t := range p.targets {
				t.health = joinURL(t.url, ref)
			}
		}
	}
	switch {
	case opts.MaxFails == 0:
		p.maxFails = DefaultMaxFails
	case opts.MaxFails > 0:
		p.maxFails = int32(min(opts.MaxFails, 1<<20))
	}
	switch {
	case opts.EjectFor < 0:
		errs = append(errs, fmt.Errorf("%s: eject_for %v is negative", prefix, opts.EjectFor))
	case opts.EjectFor == 0:
		p.ejectFor = DefaultEjectFor
	}
	p.retries = opts.Retries
	if p.retries == 0 {
		p.retries = len(p.targets) - 1
	}
	p.retries = max(0, min(p.retries, len(p.targets)-1, MaxRetries))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if p.transport == nil {
		p.transport = NewTransport()
	}
	if p.now == nil {
		p.now = time.Now
	}
	dial := p.transport.DialContext
	if dial == nil {
		dial = newDialer().DialContext
	}
	for _, t := range p.targets {
		if t.url.Scheme == "http" && h1Supported {
			t.h1 = &h1Conns{addr: httpHostPort(t.url), dial: dial, now: time.Now}
		}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "upstream", "pool", p.name)
	return p, nil
}

func checkTarget(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("URL is nil")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%q: no host", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL are not supported; set them as a header in the route", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%q: a query is not allowed in an upstream URL", u.Redacted())
	case u.Fragment != "":
		return fmt.Errorf("%q: a fragment is not allowed in an upstream URL", u.Redacted())
	case u.Opaque != "":
		return fmt.Errorf("%q: opaque URLs are not allowed", u.Redacted())
	}
	return nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// CloseIdleConnections closes the pool's idle keep-alive connections; call
// it when a reload replaces the pool.
func (p *Pool) CloseIdleConnections() {
	p.transport.CloseIdleConnections()
	for _, t := range p.targets {
		if t.h1 != nil {
			t.h1.closeIdle()
		}
	}
}

// httpHostPort is an http URL's host, with port 80 when it names none.
func httpHostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// Status returns a snapshot of every target, in configuration order.
func (p *Pool) Status() []TargetStatus {
	now := p.now()
	out := make([]TargetStatus, len(p.targets))
	for i, t := range p.targets {
		s := TargetStatus{
			URL:      t.url.String(),
			Healthy:  t.healthy.Load(),
			Inflight: t.inflight.Load(),
		}
		if e := t.ejected.Load(); e != 0 && now.UnixNano() < e {
			s.EjectedUntil = time.Unix(0, e)
		}
		s.Available = s.Healthy && s.EjectedUntil.IsZero()
		t.mu.Lock()
		s.LastError = t.lastErr
		t.mu.Unlock()
		out[i] = s
	}
	return out
}

// available reports whether t may receive traffic. now is computed lazily:
// only an ejected target needs the clock.
func (p *Pool) available(t *target) bool {
	if !t.healthy.Load() {
		return false
	}
	e := t.ejected.Load()
	return e == 0 || p.now().UnixNano() >= e
}

// pick returns an available target not in tried, or nil.
func (p *Pool) pick(tried []*target) *target {
	n := uint64(len(p.targets))
	start := p.next.Add(1) - 1
	var best *target
	for i := range n {
		t := p.targets[(start+i)%n]
		if contains(tried, t) || !p.available(t) {
			continue
		}
		if !p.leastReq {
			return t
		}
		if best == nil || t.inflight.Load() < best.inflight.Load() {
			best = t
		}
	}
	return best
}

func contains(ts []*target, t *target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// succeeded records a response from t: it clears passive failures.
func (p *Pool) succeeded(t *target) {
	if t.fails.Load() != 0 {
		t.fails.Store(0)
		t.ejected.Store(0)
	}
}

// failed records a failure of t that the upstream caused and ejects t
// after MaxFails in a row.
func (p *Pool) failed(t *target, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastErr = err.Error()
	if p.maxFails == 0 {
		return
	}
	if t.fails.Add(1) < p.maxFails {
		return
	}
	until := p.now().Add(p.ejectFor)
	t.ejected.Store(until.UnixNano())
	t.ejOK = 0
	p.log.Warn("upstream target ejected", "target", t.url.String(), "until", until, "error", err)
}
