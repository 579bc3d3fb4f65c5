package waf

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Defaults applied by New to zero-valued Options fields.
const (
	// DefaultParanoia is CRS paranoia level 1: the fewest false positives.
	DefaultParanoia = 1
	// DefaultAnomalyThreshold is CRS's inbound anomaly threshold: one
	// critical match (score 5) blocks.
	DefaultAnomalyThreshold = 5
	// DefaultBodyLimit is how many request body bytes are inspected.
	DefaultBodyLimit int64 = 128 << 10
	// MaxBodyLimit bounds BodyLimit: the inspected part of every body is
	// held in memory.
	MaxBodyLimit int64 = 64 << 20
	// DefaultMaxURILength bounds the request target (path and query).
	DefaultMaxURILength = 8 << 10
	// DefaultMaxHeaderBytes bounds the request headers, names and values.
	DefaultMaxHeaderBytes = 32 << 10
	// maxHeadLimit bounds MaxURILength and MaxHeaderBytes: net/http's own
	// default header limit.
	maxHeadLimit = 1 << 20
	// maxAnomalyThreshold keeps the threshold a number an operator meant.
	maxAnomalyThreshold = 1000
)

// Options configures a WAF. The zero value is usable: every attack group at
// paranoia 1, the CRS threshold, 128 KiB of body inspected, JSON bodies not
// inspected.
type Options struct {
	// Groups names the attack families to load: "sqli", "xss", "lfi",
	// "rfi", "rce", "scanner-detection", "protocol-attack",
	// "session-fixation", "php", "java", "nodejs" (CRS file 934, which also
	// holds the generic and SSRF rules). Protocol enforcement (920, 922),
	// method enforcement (911), initialisation (901) and the blocking
	// evaluation (949) are always loaded. nil or empty: all groups. An
	// unknown name is an error that lists the valid ones.
	Groups []string
	// Paranoia is the CRS paranoia level, 1-4: higher levels load more
	// rules and catch more, with more false positives. 0: 1.
	Paranoia int
	// AnomalyThreshold is the inbound anomaly score at which a request is
	// denied (a critical match scores 5, error 4, warning 3, notice 2).
	// 0: 5, the CRS default.
	AnomalyThreshold int
	// DisabledRules are CRS rule ids never evaluated (e.g. 942100). An id
	// that is not among the loaded rules is an error, and so are the
	// scoring machinery's own rules (901xxx, 949xxx). nil: none.
	DisabledRules []int
	// ExcludeHeaders are request header names (case-insensitive) that no
	// CRS rule inspects. nil: none.
	ExcludeHeaders []string
	// ExcludeCookies are cookie names whose values no CRS rule inspects.
	// nil: none.
	ExcludeCookies []string
	// ExcludeArgs are argument names (query, form or, with ParseJSON, JSON
	// paths in Coraza's flattened form such as "json.messages.0.content")
	// whose values no CRS rule inspects; "*" stands for one path segment,
	// so "json.messages.*.content" names every chat message's text.
	// Excluding a field blinds the WAF to it: prefer DisabledRules for a
	// rule that misfires. nil: none.
	ExcludeArgs []string
	// ParseJSON parses application/json (and application/*+json) bodies so
	// every JSON value is inspected as an argument. A body that is not
	// valid JSON is then denied (rule 200002), unless it was cut at
	// BodyLimit. false: JSON bodies are not inspected at all.
	ParseJSON bool
	// BodyLimit is how many bytes of a request body are inspected, at most
	// MaxBodyLimit. A longer body is inspected in part (its first BodyLimit
	// bytes, plus one byte that tells it was cut) and still forwarded
	// whole; a JSON or multipart body cut this way is inspected best-effort
	// and not denied for failing to parse. 0: 128 KiB.
	BodyLimit int64
	// MaxURILength is the longest request target (path and query, as
	// sent) that is inspected; a longer one is denied (rule 200010) without
	// running the rules, whose cost grows with every byte inspected.
	// 0: 8 KiB.
	MaxURILength int
	// MaxHeaderBytes is the most header bytes (names and values, cookies
	// included) that are inspected; more is denied (rule 200011) without
	// running the rules. 0: 32 KiB.
	MaxHeaderBytes int
	// Logger receives the build summary and inspection errors. nil:
	// slog.Default().
	Logger *slog.Logger
}

// crsFile is where the embedded CRS rules live in coreruleset.FS.
const crsDir = "@owasp_crs/"

// groupFiles maps a group name to its CRS rule file.
var groupFiles = map[string]string{
	"scanner-detection": "REQUEST-913-SCANNER-DETECTION.conf",
	"protocol-attack":   "REQUEST-921-PROTOCOL-ATTACK.conf",
	"lfi":               "REQUEST-930-APPLICATION-ATTACK-LFI.conf",
	"rfi":               "REQUEST-931-APPLICATION-ATTACK-RFI.conf",
	"rce":               "REQUEST-932-APPLICATION-ATTACK-RCE.conf",
	"php":               "REQUEST-933-APPLICATION-ATTACK-PHP.conf",
	"nodejs":            "REQUEST-934-APPLICATION-ATTACK-GENERIC.conf",
	"xss":               "REQUEST-941-APPLICATION-ATTACK-XSS.conf",
	"sqli":              "REQUEST-942-APPLICATION-ATTACK-SQLI.conf",
	"session-fixation":  "REQUEST-943-APPLICATION-ATTACK-SESSION-FIXATION.conf",
	"java":              "REQUEST-944-APPLICATION-ATTACK-JAVA.conf",
}

// alwaysBefore are loaded ahead of the groups, whatever the Options say.
// REQUEST-905 (Apache-specific exceptions that switch the CRS off for some
// loopback requests) and REQUEST-999 (exclusions that name rules of groups
// which may not be loaded) are left out on purpose.
var alwaysBefore = []string{
	"REQUEST-901-INITIALIZATION.conf",
	"REQUEST-911-METHOD-ENFORCEMENT.conf",
	"REQUEST-920-PROTOCOL-ENFORCEMENT.conf",
	"REQUEST-922-MULTIPART-ATTACK.conf",
}

const blockingFile = "REQUEST-949-BLOCKING-EVALUATION.conf"

// GroupNames returns the valid group names, sorted.
func GroupNames() []string {
	names := make([]string, 0, len(groupFiles))
	for n := range groupFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// groupOf names the family a rule id belongs to, for verdict messages.
func groupOf(id int) string {
	switch {
	case id == 200002 || id == 200003:
		return "body-parse"
	case id == 200004 || id == 200005 || id == 200008:
		return "encoding"
	case id == RuleOversizedURI || id == RuleOversizedHeaders:
		return "size"
	case id == RuleBadExpect:
		return "expect"
	case id >= 949000 && id < 950000:
		return "anomaly-score"
	case id >= 911000 && id < 912000, id >= 920000 && id < 921000, id >= 922000 && id < 923000:
		return "protocol-enforcement"
	}
	prefix := fmt.Sprintf("REQUEST-%d-", id/1000)
	for name, file := range groupFiles {
		if strings.HasPrefix(file, prefix) {
			return name
		}
	}
	return "other"
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if len(o.Groups) == 0 {
		o.Groups = GroupNames()
	}
	if o.Paranoia == 0 {
		o.Paranoia = DefaultParanoia
	}
	if o.AnomalyThreshold == 0 {
		o.AnomalyThreshold = DefaultAnomalyThreshold
	}
	if o.BodyLimit == 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.MaxURILength == 0 {
		o.MaxURILength = DefaultMaxURILength
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// validate checks o (after withDefaults) and returns every problem.
func (o Options) validate() error {
	var errs []error
	for _, g := range o.Groups {
		if _, ok := groupFiles[g]; !ok {
			errs = append(errs, fmt.Errorf("waf: unknown rule group %q (valid: %s)", g, strings.Join(GroupNames(), ", ")))
		}
	}
	if o.Paranoia < 1 || o.Paranoia > 4 {
		errs = append(errs, fmt.Errorf("waf: paranoia %d is out of range: use 1 (fewest false positives) to 4", o.Paranoia))
	}
	if o.AnomalyThreshold < 1 || o.AnomalyThreshold > maxAnomalyThreshold {
		errs = append(errs, fmt.Errorf("waf: anomaly threshold %d is out of range: use 1 to %d (CRS default 5)", o.AnomalyThreshold, maxAnomalyThreshold))
	}
	if o.BodyLimit < 1 || o.BodyLimit > MaxBodyLimit {
		errs = append(errs, fmt.Errorf("waf: body limit %d is out of range: use 1 to %d bytes", o.BodyLimit, MaxBodyLimit))
	}
	if o.MaxURILength < 1 || o.MaxURILength > maxHeadLimit {
		errs = append(errs, fmt.Errorf("waf: max URI length %d is out of range: use 1 to %d bytes", o.MaxURILength, maxHeadLimit))
	}
	if o.MaxHeaderBytes < 1 || o.MaxHeaderBytes > maxHeadLimit {
		errs = append(errs, fmt.Errorf("waf: max header bytes %d is out of range: use 1 to %d bytes", o.MaxHeaderBytes, maxHeadLimit))
	}
	for _, id := range o.DisabledRules {
		switch {
		case id < 1:
			errs = append(errs, fmt.Errorf("waf: disabled rule %d is not a rule id", id))
		case id >= 901000 && id < 902000, id >= 949000 && id < 950000:
			errs = append(errs, fmt.Errorf("waf: rule %d belongs to the anomaly scoring itself and cannot be disabled: drop a group, raise the threshold or exclude a target instead", id))
		}
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"header", o.ExcludeHeaders}, {"cookie", o.ExcludeCookies}, {"argument", o.ExcludeArgs}} {
		for _, n := range l.names {
			if err := checkName(n); err != nil {
				errs = append(errs, fmt.Errorf("waf: excluded %s %q: %w", l.what, n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// argKey renders an ExcludeArgs name as a SecLang key: literal, or with
// each "*" standing for one path segment (no dots) as an anchored regular
// expression.
func argKey(name string) string {
	if !strings.Contains(name, "*") {
		return name
	}
	parts := strings.Split(name, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return "/^" + strings.Join(parts, `[^.]+`) + "$/"
}

// checkName refuses names that would change the meaning of the SecLang
// exclusion they are written into: an empty key excludes every key, a
// leading slash makes a regular expression, and separators split targets.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("an empty name would exclude everything")
	case strings.HasPrefix(n, "/"):
		return errors.New("must not start with '/' (regular expressions are not supported)")
	case len(n) > 256:
		return errors.New("longer than 256 bytes")
	}
	for _, c := range n {
		if c <= ' ' || c == 0x7f || c > 0x7e || strings.ContainsRune(`|"',\!`, c) {
			return fmt.Errorf("contains %q: use printable ASCII without spaces or any of | \" ' , \\ !", c)
		}
	}
	return nil
}

// directives renders o (valid, with defaults) as SecLang for Coraza.
func (o Options) directives() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// Engine: blocking, request side only, nothing written to disk.
	line("SecRuleEngine On")
	line("SecRequestBodyAccess On")
	// One byte over BodyLimit is kept so a cut body is told from one of
	// exactly BodyLimit bytes: Coraza sets INBOUND_DATA_ERROR only then.
	line("SecRequestBodyLimit %d", o.BodyLimit+1)
	line("SecRequestBodyInMemoryLimit %d", o.BodyLimit+1)
	line("SecRequestBodyLimitAction ProcessPartial")
	line("SecResponseBodyAccess Off")
	line("SecAuditEngine Off")
	line("SecRequestBodyJsonDepthLimit 256")
	line("SecArgumentsLimit 1000")
	// Body processors (from coraza.conf-recommended).
	line(`SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"`)
	if o.ParseJSON {
		line(`SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`)
		line(`SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"`)
	} else {
		// Not parsed means not inspected: read as form data a JSON prompt
		// is noise that trips the SQL rules.
		line(`SecRule REQUEST_HEADERS:Content-Type "^application/(?:[a-z0-9.-]+[+])?json" "id:200007,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyAccess=Off"`)
	}
	// A body that fails to parse is denied, unless it was cut at the limit
	// (INBOUND_DATA_ERROR), where failing is expected and what was parsed
	// before the cut is still inspected.
	line(`SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2,chain"`)
	line(`  SecRule INBOUND_DATA_ERROR "!@eq 1" "t:none"`)
	line(`SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation.',severity:2,chain"`)
	line(`  SecRule INBOUND_DATA_ERROR "!@eq 1" "t:none"`)
	// Broken encodings are denied outright, whatever their score would be:
	// invalid percent-encoding in the query, invalid UTF-8 in the path, the
	// query or a JSON body (JSON is UTF-8 by definition).
	line(`SecRule QUERY_STRING "@validateUrlEncoding" "id:200008,phase:1,t:none,log,deny,status:400,msg:'Invalid percent-encoding in the query.',severity:2"`)
	line(`SecRule REQUEST_FILENAME|ARGS_GET|ARGS_GET_NAMES "@validateUtf8Encoding" "id:200004,phase:2,t:none,log,deny,status:400,msg:'Invalid UTF-8 in the path or query.',severity:2"`)
	line(`SecRule REQBODY_PROCESSOR "@streq JSON" "id:200005,phase:2,t:none,log,deny,status:400,msg:'Invalid UTF-8 in a JSON body.',severity:2,chain"`)
	line(`  SecRule ARGS_POST|ARGS_POST_NAMES "@validateUtf8Encoding" "t:none"`)
	// CRS setup (in place of crs-setup.conf.example).
	line(`SecDefaultAction "phase:1,log,auditlog,pass"`)
	line(`SecDefaultAction "phase:2,log,auditlog,pass"`)
	line(`SecAction "id:900990,phase:1,pass,t:none,nolog,setvar:tx.crs_setup_version=4250"`)
	line(`SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d"`, o.Paranoia)
	line(`SecAction "id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=4"`, o.AnomalyThreshold)
	line(`SecAction "id:900950,phase:1,pass,t:none,nolog,setvar:tx.crs_validate_utf8_encoding=1"`)
	// Departures from the CRS defaults for ordinary clients (defaults.go).
	line(`SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=%s'"`, allowedMethods)
	line(`SecAction "id:900250,phase:1,pass,t:none,nolog,setvar:'tx.restricted_headers_basic=%s'"`, restrictedHeadersBasic)
	line(`SecRule REQUEST_HEADERS:Expect "!@rx ^100-continue$" "id:%d,phase:1,t:none,t:lowercase,log,deny,status:417,msg:'Expect header other than 100-continue.',severity:2"`, RuleBadExpect)
	for _, f := range alwaysBefore {
		line("Include %s%s", crsDir, f)
	}
	groups := slices.Clone(o.Groups)
	sort.Slice(groups, func(i, j int) bool { return groupFiles[groups[i]] < groupFiles[groups[j]] })
	groups = slices.CompactFunc(groups, func(a, b string) bool { return a == b })
	for _, g := range groups {
		line("Include %s%s", crsDir, groupFiles[g])
	}
	line("Include %s%s", crsDir, blockingFile)
	// Exclusions, after the rules they change. CRS rule ids are 9xxxxx;
	// the body-processor rules above keep seeing every header.
	for _, id := range o.DisabledRules {
		line("SecRuleRemoveById %d", id)
	}
	for _, h := range o.ExcludeHeaders {
		line(`SecRuleUpdateTargetById 900000-999999 "!REQUEST_HEADERS:%s"`, h)
	}
	for _, c := range o.ExcludeCookies {
		line(`SecRuleUpdateTargetById 900000-999999 "!REQUEST_COOKIES:%s|!REQUEST_COOKIES_NAMES:%s"`, c, c)
	}
	for _, a := range o.ExcludeArgs {
		k := argKey(a)
		line(`SecRuleUpdateTargetById 900000-999999 "!ARGS:%s|!ARGS_GET:%s|!ARGS_POST:%s"`, k, k, k)
	}
	return b.String()
}
