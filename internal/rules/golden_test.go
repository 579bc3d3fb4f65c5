package rules

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sekisho/sekisho/internal/golden"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/testclock"
	"github.com/sekisho/sekisho/internal/waf"
)

var update = flag.Bool("update", false, "rewrite golden files")

// yRule is a rule as the config file writes it (the lead's loader maps the
// real config the same way).
type yRule struct {
	Priority    int    `yaml:"priority"`
	Description string `yaml:"description"`
	Phase       string `yaml:"phase"`
	Match       struct {
		IPRanges    []string `yaml:"ip_ranges"`
		NotIPRanges []string `yaml:"not_ip_ranges"`
		Expr        string   `yaml:"expr"`
		WAF         bool     `yaml:"waf"`
	} `yaml:"match"`
	Action      string `yaml:"action"`
	Status      int    `yaml:"status"`
	RedirectURL string `yaml:"redirect_url"`
	Rate        *struct {
		Count int    `yaml:"count"`
		Per   string `yaml:"per"`
	} `yaml:"rate"`
	BanFor     string            `yaml:"ban_for"`
	Key        []string          `yaml:"key"`
	AddHeaders map[string]string `yaml:"add_headers"`
	Preview    bool              `yaml:"preview"`
}

func (y yRule) rule(t testing.TB) Rule {
	r := Rule{Priority: y.Priority, Description: y.Description, Phase: Phase(y.Phase),
		Match:  Match{IPRanges: y.Match.IPRanges, NotIPRanges: y.Match.NotIPRanges, Expr: y.Match.Expr, WAF: y.Match.WAF},
		Action: Action(y.Action), Status: y.Status, RedirectURL: y.RedirectURL, Key: y.Key,
		AddHeaders: y.AddHeaders, Preview: y.Preview}
	if y.Rate != nil {
		r.Rate = ratelimit.Rate{Count: y.Rate.Count, Per: dur(t, y.Rate.Per)}
	}
	r.BanFor = dur(t, y.BanFor)
	return r
}

func dur(t testing.TB, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// yRequest is one request of a golden file.
type yRequest struct {
	Name     string            `yaml:"name"`
	IP       string            `yaml:"ip"`
	Method   string            `yaml:"method"`
	Path     string            `yaml:"path"`
	Host     string            `yaml:"host"`
	Query    string            `yaml:"query"`
	Headers  map[string]string `yaml:"headers"`
	Cookies  map[string]string `yaml:"cookies"`
	APIKey   string            `yaml:"apikey"`
	Identity *struct {
		Kind   string   `yaml:"kind"`
		User   string   `yaml:"user"`
		Email  string   `yaml:"email"`
		Groups []string `yaml:"groups"`
	} `yaml:"identity"`
	// Repeat sends the request this many times (default 1), Advance moves
	// the fake clock after each.
	Repeat  int    `yaml:"repeat"`
	Advance string `yaml:"advance"`
	// WAF makes the fake WAF flag the request.
	WAF bool `yaml:"waf"`
}

func (y yRequest) input(t testing.TB) *Input {
	in := &Input{Method: y.Method, Path: y.Path, Host: y.Host, Scheme: "https", Header: http.Header{}, APIKeyID: y.APIKey}
	if in.Method == "" {
		in.Method = http.MethodGet
	}
	if in.Path == "" {
		in.Path = "/"
	}
	if in.Host == "" {
		in.Host = "app.example.com"
	}
	if y.IP != "" {
		if a, err := netip.ParseAddr(y.IP); err == nil {
			in.IP = a
		}
	}
	q, err := url.ParseQuery(y.Query)
	if err != nil {
		t.Fatalf("request %s: query: %v", y.Name, err)
	}
	in.Query = q
	for k, v := range y.Headers {
		in.Header.Add(k, v)
	}
	in.Cookie = func(name string) string { return y.Cookies[name] }
	if y.Identity != nil {
		in.Identity = &identity.Identity{Kind: identity.Kind(y.Identity.Kind), User: y.Identity.User,
			Email: y.Identity.Email, Groups: y.Identity.Groups}
	}
	r, _ := http.NewRequest(in.Method, "https://"+in.Host+in.Path, nil)
	if y.WAF {
		r.Header.Set("X-Test-Waf", "flag")
	}
	in.Request = r
	return in
}

// goldenFile is the input half of testdata/*.txt.
type goldenFile struct {
	DefaultAction      string     `yaml:"default_action"`
	RouteDefaultAction string     `yaml:"route_default_action"`
	Route              string     `yaml:"route"`
	NoLimiter          bool       `yaml:"no_limiter"`
	NoWAF              bool       `yaml:"no_waf"`
	Rules              []yRule    `yaml:"rules"`
	RouteRules         []yRule    `yaml:"route_rules"`
	Requests           []yRequest `yaml:"requests"`
}

// fakeWAF flags requests carrying X-Test-Waf.
type fakeWAF struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeWAF) Inspect(r *http.Request) (waf.Verdict, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.err != nil {
		return waf.Verdict{}, f.err
	}
	if r.Header.Get("X-Test-Waf") != "" {
		return waf.Verdict{Matched: true, RuleIDs: []int{942100, 942190}, Score: 10,
			Message: "WAF anomaly score reached the threshold (sqli)"}, nil
	}
	return waf.Verdict{}, nil
}

// fakeClock is the settable test clock.
type fakeClock = testclock.Clock

func newLimiter(t testing.TB) (*ratelimit.Memory, *fakeClock) {
	clk := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	m, err := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m, clk
}

func decodeStrict(t testing.TB, in string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatal(err)
	}
}

func (g *goldenFile) compile(t testing.TB, lim ratelimit.Limiter, w waf.Inspector) (*Set, error) {
	var gw, rt []Rule
	for _, y := range g.Rules {
		gw = append(gw, y.rule(t))
	}
	for _, y := range g.RouteRules {
		rt = append(rt, y.rule(t))
	}
	opts := Options{DefaultAction: Action(g.DefaultAction), RouteDefaultAction: Action(g.RouteDefaultAction),
		RouteName: g.Route, Limiter: lim, WAF: w}
	if g.NoLimiter {
		opts.Limiter = nil
	}
	if g.NoWAF {
		opts.WAF = nil
	}
	return Compile(gw, rt, opts)
}

// decide runs both phases the way the pipeline does and describes the
// outcome in one line.
func decide(s *Set, in *Input) string {
	phase := "edge"
	res := s.Eval(context.Background(), PhaseEdge, in)
	if res.Action == ActionNone {
		phase = "identity"
		previews := res.Previews
		res = s.Eval(context.Background(), PhaseIdentity, in)
		res.Previews = append(previews, res.Previews...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", phase, res.Action)
	if res.Status != 0 {
		fmt.Fprintf(&b, " %d", res.Status)
	}
	if res.Location != "" {
		fmt.Fprintf(&b, " location=%s", res.Location)
	}
	if res.RetryAfter != 0 {
		fmt.Fprintf(&b, " retry_after=%s", res.RetryAfter)
	}
	for _, k := range sortedKeys(res.AddHeaders) {
		fmt.Fprintf(&b, " +%s=%s", k, strings.Join(res.AddHeaders[k], ","))
	}
	if len(res.WAFRuleIDs) > 0 {
		fmt.Fprintf(&b, " waf=%v score=%d", res.WAFRuleIDs, res.WAFScore)
	}
	fmt.Fprintf(&b, " (%s)", res.AuditReason())
	if res.Err != nil {
		fmt.Fprintf(&b, " err=%v", res.Err)
	}
	return b.String()
}

func sortedKeys(h http.Header) []string { return slices.Sorted(maps.Keys(h)) }

// TestGoldenDecisions: each testdata/*.txt is rules and requests, "----",
// then one decision line per request (per repetition).
func TestGoldenDecisions(t *testing.T) {
	golden.Run(t, "testdata/*.txt", *update, func(t *testing.T, _, in string) string {
		var g goldenFile
		decodeStrict(t, in, &g)
		lim, clk := newLimiter(t)
		s, err := g.compile(t, lim, &fakeWAF{})
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		var b strings.Builder
		for _, rq := range g.Requests {
			n := max(rq.Repeat, 1)
			for i := 1; i <= n; i++ {
				name := rq.Name
				if n > 1 {
					name = fmt.Sprintf("%s#%d", rq.Name, i)
				}
				fmt.Fprintf(&b, "%s: %s\n", name, decide(s, rq.input(t)))
				clk.Advance(dur(t, rq.Advance))
			}
		}
		return b.String()
	})
}

// TestGoldenCompileErrors: each testdata/errors/*.txt is rules, "----", then
// the check errors, one per line.
func TestGoldenCompileErrors(t *testing.T) {
	golden.Run(t, "testdata/errors/*.txt", *update, func(t *testing.T, _, in string) string {
		var g goldenFile
		decodeStrict(t, in, &g)
		lim, _ := newLimiter(t)
		_, err := g.compile(t, lim, &fakeWAF{})
		if err == nil {
			t.Fatal("compile accepted the rules")
		}
		return flatten(err)
	})
}

// flatten lists a joined error tree, one leaf per line, each prefixed with
// the messages of its parents.
func flatten(err error) string {
	var b strings.Builder
	var walk func(prefix string, err error)
	walk = func(prefix string, err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(prefix, e)
			}
			return
		}
		msg := err.Error()
		// A rule's errors are "rule ...: " wrapping a joined list.
		if inner := errors.Unwrap(err); inner != nil {
			if j, ok := inner.(interface{ Unwrap() []error }); ok {
				head := strings.TrimSuffix(msg[:len(msg)-len(inner.Error())], " ")
				for _, e := range j.Unwrap() {
					walk(prefix+head+" ", e)
				}
				return
			}
		}
		b.WriteString(prefix + msg + "\n")
	}
	walk("", err)
	return b.String()
}
