package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults applied to a [HealthCheck] whose fields are zero.
const (
	DefaultHealthInterval     = 10 * time.Second
	DefaultHealthTimeout      = 5 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

// HealthCheck configures active health checks with the usual load-balancer
// semantics: every Interval each target gets GET Path; a 2xx or 3xx answer
// within Timeout passes (redirects are not followed), anything else fails.
// A healthy target turns unhealthy after UnhealthyThreshold failures in a
// row, an unhealthy one turns healthy after HealthyThreshold passes in a row.
// HealthyThreshold passes in a row also end a passive ejection
// (PoolOptions.EjectFor) early, when they all came after it began: a
// target that recovered takes traffic again without waiting out EjectFor.
type HealthCheck struct {
	// Path is the request path, joined with the target's base path like a
	// proxied request ("/healthz" on "http://h/app" probes "/app/healthz").
	// It may carry a query. Required; must start with "/".
	Path string
	// Interval between checks of a target. 0 means 10s.
	Interval time.Duration
	// Timeout for one check, body included. 0 means 5s, or Interval if that
	// is shorter; it must not exceed Interval.
	Timeout time.Duration
	// HealthyThreshold is the passes in a row that make a target healthy. 0 means 2.
	HealthyThreshold int
	// UnhealthyThreshold is the failures in a row that make a target unhealthy. 0 means 3.
	UnhealthyThreshold int
	// Host is the Host header of the check. "" means the target's host.
	Host string
}

func (hc *HealthCheck) withDefaults() (*HealthCheck, error) {
	c := *hc
	var errs []error
	if !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with \"/\"", c.Path))
	}
	if c.Interval < 0 || c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("interval %v and timeout %v must not be negative", c.Interval, c.Timeout))
	}
	if c.HealthyThreshold < 0 || c.UnhealthyThreshold < 0 {
		errs = append(errs, fmt.Errorf("healthy_threshold %d and unhealthy_threshold %d must not be negative", c.HealthyThreshold, c.UnhealthyThreshold))
	}
	if c.Interval == 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultHealthTimeout, c.Interval)
	}
	if c.Timeout > c.Interval {
		errs = append(errs, fmt.Errorf("timeout %v is longer than interval %v", c.Timeout, c.Interval))
	}
	if c.HealthyThreshold == 0 {
		c.HealthyThreshold = DefaultHealthyThreshold
	}
	if c.UnhealthyThreshold == 0 {
		c.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if strings.ContainsAny(c.Host, " \r\n\t/") {
		errs = append(errs, fmt.Errorf("host %q is not a host name", c.Host))
	}
	return &c, errors.Join(errs...)
}

// Start runs the pool's active health checks until ctx is done. Without a
// HealthCheck it does nothing. It first checks every target once, in
// parallel, and returns after that round (at most HealthCheck.Timeout): a
// target that passes it is healthy and one that fails is unhealthy at once,
// whatever the thresholds; from then on the thresholds apply, in background
// goroutines that end with ctx. Until Start is called every target is
// healthy. Calls after the first do nothing.
func (p *Pool) Start(ctx context.Context) {
	if p.hc == nil || !p.started.CompareAndSwap(false, true) {
		return
	}
	var wg sync.WaitGroup
	for _, t := range p.targets {
		wg.Go(func() {
			err := p.probe(ctx, t)
			if ctx.Err() != nil {
				return
			}
			p.setInitial(t, err)
		})
	}
	wg.Wait()
	for _, t := range p.targets {
		go p.checkLoop(ctx, t)
	}
}

func (p *Pool) checkLoop(ctx context.Context, t *target) {
	tick := time.NewTicker(p.hc.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := p.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		p.record(t, err)
	}
}

// probe checks t once; nil means it passed.
func (p *Pool) probe(ctx context.Context, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, p.hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.health.String(), nil)
	if err != nil {
		return err
	}
	req.Host = p.hc.Host
	req.Header.Set("User-Agent", "sekisho-health-check")
	if p.header != nil {
		name, value, err := p.header(ctx, t.url)
		if err != nil {
			return err
		}
		req.Header.Set(name, value)
	}
	res, err := p.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	// Read a little so a small body leaves the connection reusable.
	_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 399 {
		return fmt.Errorf("health check %s: status %d", t.health.Path, res.StatusCode)
	}
	return nil
}

func (p *Pool) setInitial(t *target, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.hcFail, t.lastErr = 1, err.Error()
		t.healthy.Store(false)
		p.log.Warn("upstream target unhealthy at start", "target", t.url.String(), "error", err)
		return
	}
	t.hcOK = 1
	t.healthy.Store(true)
}

// record applies one check result to t's thresholds.
func (p *Pool) record(t *target, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.hcFail = 0
		t.hcOK++
		if !t.healthy.Load() && t.hcOK >= p.hc.HealthyThreshold {
			t.healthy.Store(true)
			p.log.Info("upstream target healthy", "target", t.url.String(), "passes", t.hcOK)
		}
		p.endEjection(t)
		return
	}
	t.hcOK = 0
	t.ejOK = 0
	t.hcFail++
	t.lastErr = err.Error()
	if t.healthy.Load() && t.hcFail >= p.hc.UnhealthyThreshold {
		t.healthy.Store(false)
		p.log.Warn("upstream target unhealthy", "target", t.url.String(), "failures", t.hcFail, "error", err)
	}
}

// endEjection counts a passing check of t (t.mu held) against a passive
// ejection in force, and ends the ejection at HealthyThreshold passes in a
// row made since it began. As when an ejection runs out, the failure count
// stays: one more failure ejects the target again.
func (p *Pool) endEjection(t *target) {
	e := t.ejected.Load()
	if e == 0 || p.now().UnixNano() >= e {
		t.ejOK = 0
		return
	}
	t.ejOK++
	if t.ejOK < p.hc.HealthyThreshold {
		return
	}
	t.ejected.Store(0)
	t.ejOK = 0
	p.log.Info("upstream target ejection ended by passing health checks", "target", t.url.String(), "passes", p.hc.HealthyThreshold)
}
