package waf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/sekisho/sekisho/internal/reqinfo"
)

// Rule ids of the checks Inspect makes itself, before the rule set runs.
const (
	// RuleOversizedURI denies a request target longer than MaxURILength.
	RuleOversizedURI = 200010
	// RuleOversizedHeaders denies headers larger than MaxHeaderBytes.
	RuleOversizedHeaders = 200011
	// RuleBadExpect denies an Expect header whose value is not exactly
	// "100-continue" (any case), in place of the CRS's refusing every
	// Expect (see defaults.go).
	RuleBadExpect = 200012
)

// WAF is a compiled CRS rule set. It is safe for concurrent use; each
// Inspect call runs one Coraza transaction.
type WAF struct {
	waf       coraza.WAF
	bodyLimit int64
	maxURI    int
	maxHeader int
	paranoia  int
	logger    *slog.Logger
	rules     int
}

var _ Inspector = (*WAF)(nil)

// New compiles the rule set that o describes. It fails, naming every
// problem, on an unknown group, an out-of-range setting, a disabled rule id
// that is not loaded, or a name that cannot be excluded.
func New(o Options) (*WAF, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	loaded := map[int]bool{}
	cfg := coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(o.directives())
	cfg = experimental.WAFConfigWithRuleObserver(cfg, func(r types.RuleMetadata) { loaded[r.ID()] = true })
	w, err := coraza.NewWAF(cfg)
	if err != nil {
		return nil, fmt.Errorf("waf: compiling the core rule set: %w", err)
	}
	var errs []error
	for _, id := range o.DisabledRules {
		if !loaded[id] {
			errs = append(errs, fmt.Errorf("waf: disabled rule %d is not among the loaded rules (groups %s, paranoia %d): check the id and that its group is enabled",
				id, strings.Join(o.Groups, ","), o.Paranoia))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := len(loaded) - len(o.DisabledRules)
	if c, ok := w.(experimental.WAFWithRules); ok {
		n = c.RulesCount()
	}
	o.Logger.Info("waf compiled", "component", "waf", "rules", n, "groups", strings.Join(o.Groups, ","),
		"paranoia", o.Paranoia, "anomaly_threshold", o.AnomalyThreshold, "parse_json", o.ParseJSON, "body_limit", o.BodyLimit)
	return &WAF{waf: w, bodyLimit: o.BodyLimit, maxURI: o.MaxURILength, maxHeader: o.MaxHeaderBytes,
		paranoia: o.Paranoia, logger: o.Logger, rules: n}, nil
}

// RulesCount is how many rules the compiled set holds.
func (w *WAF) RulesCount() int { return w.rules }

// Inspect runs r's connection, URI, headers and body through the rule set.
// It reads at most BodyLimit+1 bytes of the body and puts them back in
// front of the rest, so r.Body still yields the whole body, and r.Body's
// Close still closes the original. A request the rules deny comes back
// Matched; an error means the request could not be read (the body failed
// mid-way) and the caller should deny it. Inspect never panics on request
// content: a panic inside the rule engine is turned into an error.
func (w *WAF) Inspect(r *http.Request) (v Verdict, err error) {
	uri := r.RequestURI
	if uri == "" && r.URL != nil {
		uri = r.URL.RequestURI()
	}
	if id := w.oversized(r, uri); id != 0 {
		return Verdict{Matched: true, RuleIDs: []int{id}, Message: message([]int{id}, id)}, nil
	}
	tx := w.newTx(r)
	defer func() {
		if p := recover(); p != nil {
			w.logger.Error("waf rule engine panicked", "component", "waf", "panic", fmt.Sprint(p))
			v, err = Verdict{}, fmt.Errorf("waf: rule engine failed on this request: %v", p)
		}
		tx.ProcessLogging()
		if cerr := tx.Close(); cerr != nil {
			w.logger.Warn("waf transaction close", "component", "waf", "error", cerr)
		}
	}()

	client, cport := clientAddr(r)
	tx.ProcessConnection(client, cport, "", 0)
	tx.ProcessURI(uri, r.Method, r.Proto)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(hostOnly(r.Host))
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Length") == "" {
		// Requests built in code carry the length only in the field.
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return w.verdict(tx, it), nil
	}
	if tx.IsRequestBodyAccessible() && r.Body != nil && r.Body != http.NoBody {
		head, rerr := w.readHead(r)
		if rerr != nil {
			return Verdict{}, fmt.Errorf("waf: reading the request body: %w", rerr)
		}
		if len(head) > 0 {
			it, _, werr := tx.WriteRequestBody(head)
			if werr != nil {
				return Verdict{}, fmt.Errorf("waf: buffering the request body: %w", werr)
			}
			if it != nil {
				return w.verdict(tx, it), nil
			}
		}
	}
	it, perr := tx.ProcessRequestBody()
	if perr != nil {
		return Verdict{}, fmt.Errorf("waf: processing the request body: %w", perr)
	}
	if it == nil {
		it = tx.Interruption()
	}
	if it != nil {
		return w.verdict(tx, it), nil
	}
	return Verdict{}, nil
}

// oversized returns the rule a request's target or headers break by size,
// or 0. The rule set's cost grows with every inspected byte (about 20 µs
// per byte at paranoia 1), so such requests are denied before it runs.
func (w *WAF) oversized(r *http.Request, uri string) int {
	if len(uri) > w.maxURI {
		return RuleOversizedURI
	}
	n := len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	if n > w.maxHeader {
		return RuleOversizedHeaders
	}
	return 0
}

func (w *WAF) newTx(r *http.Request) types.Transaction {
	if ww, ok := w.waf.(experimental.WAFWithOptions); ok {
		id := reqinfo.From(r.Context()).ID
		if id == "" {
			id = reqinfo.NewID()
		}
		return ww.NewTransactionWithOptions(experimental.Options{ID: id, Context: r.Context()})
	}
	return w.waf.NewTransaction()
}

// readHead reads up to bodyLimit+1 bytes of r.Body and replaces r.Body with
// a reader that yields them and then the rest. On a read error the bytes
// read so far are put back too, so the caller sees a consistent body.
func (w *WAF) readHead(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r.Body, w.bodyLimit+1))
	head := buf.Bytes()
	r.Body = &restoredBody{Reader: io.MultiReader(bytes.NewReader(head), r.Body), closer: r.Body}
	return head, err
}

// restoredBody is the inspected head of a body followed by its unread rest.
type restoredBody struct {
	io.Reader
	closer io.Closer
}

// Close closes the original body.
func (b *restoredBody) Close() error { return b.closer.Close() }

// verdict turns an interruption into a Verdict naming the rules that
// scored (or denied outright) and the score they reached.
func (w *WAF) verdict(tx types.Transaction, it *types.Interruption) Verdict {
	ids := []int{}
	for _, m := range tx.MatchedRules() {
		md := m.Rule()
		// Rules without a severity are CRS bookkeeping (setvar, skips).
		if md.Severity() == types.RuleSeverityUnset || md.ID() == 0 || scoringMachinery(md.ID()) {
			continue
		}
		ids = append(ids, md.ID())
	}
	if it.RuleID != 0 && (!scoringMachinery(it.RuleID) || len(ids) == 0) {
		ids = append(ids, it.RuleID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return Verdict{Matched: true, RuleIDs: ids, Score: w.score(tx), Message: message(ids, it.RuleID)}
}

// scoringMachinery reports whether id is one of the CRS rules that add the
// scores up and deny (949xxx) or correlate them for the log (980xxx): they
// fire because other rules matched, and cannot be disabled.
func scoringMachinery(id int) bool {
	return id >= 949000 && id < 950000 || id >= 980000 && id < 981000
}

// score is the inbound anomaly score the rules have added up so far at the
// blocking paranoia level: the CRS keeps one sum per level
// (tx.inbound_anomaly_score_pl1 ... pl4) and the blocking evaluation adds
// those up to tx.blocking_paranoia_level.
func (w *WAF) score(tx types.Transaction) int {
	st, ok := tx.(plugintypes.TransactionState)
	if !ok {
		return 0
	}
	vars := st.Variables().TX()
	total := 0
	for pl := 1; pl <= w.paranoia; pl++ {
		for _, s := range vars.Get("inbound_anomaly_score_pl" + strconv.Itoa(pl)) {
			if n, err := strconv.Atoi(s); err == nil {
				total += n
			}
		}
	}
	return total
}

// message is a short summary of ids built only from the rule ids, never
// from request data.
func message(ids []int, by int) string {
	var groups []string
	for _, id := range ids {
		if g := groupOf(id); g != "anomaly-score" && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	what := "request"
	if len(groups) > 0 {
		what = strings.Join(groups, ", ")
	}
	switch groupOf(by) {
	case "anomaly-score":
		return fmt.Sprintf("WAF anomaly score reached the threshold (%s)", what)
	case "body-parse":
		return "WAF could not parse the request body"
	case "encoding":
		return "WAF found an invalid encoding in the request"
	case "size":
		return "WAF refused an oversized request target or headers"
	case "expect":
		return "WAF refused an Expect header other than 100-continue"
	default:
		return fmt.Sprintf("WAF rule %d denied the %s", by, what)
	}
}

// clientAddr is the client the pipeline resolved, or the peer address.
func clientAddr(r *http.Request) (string, int) {
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host, port = r.RemoteAddr, ""
	}
	p, _ := strconv.Atoi(port)
	if ip := reqinfo.From(r.Context()).ClientIP; ip.IsValid() {
		return ip.String(), p
	}
	return host, p
}

// hostOnly strips a port from a Host header value.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
