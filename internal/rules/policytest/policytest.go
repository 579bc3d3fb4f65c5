// Package policytest checks a table of requests against a gateway's real
// configuration: `sekisho policy test CASES.yaml`. Each case is a request
// (method, host, path, headers, source IP, identity) and the outcome a team
// expects (action, status, the rule that decided, the route), so rule
// changes are reviewed like code: the cases file sits next to the config and
// CI fails when a change lets through what it should not.
//
// The file is strict YAML (unknown keys are errors with their line):
//
//	version: 1
//	cases:
//	  - name: office may use the admin API
//	    request:
//	      method: GET                  # default GET
//	      host: dify.example.com       # required
//	      path: /admin/users           # default /
//	      query: "debug=1"             # optional, raw query string
//	      headers: {User-Agent: curl/8.5}
//	      source_ip: 10.1.2.3          # required: the client as sekisho resolves it
//	      identity: {kind: session, user: alice, email: alice@example.com, groups: [staff]}
//	    expect:
//	      action: allow                # allow | deny | redirect | throttle | rate_based_ban | login
//	      status: 0                    # optional; 0: not checked
//	      rule: 100                    # optional: the deciding rule's priority, or "default"
//	      route: dify-console          # optional
//
// An omitted identity is the anonymous caller. The evaluate function given to
// Run (written by the CLI) sends each case through the same router, rules and
// policy the server uses.
package policytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sekisho/sekisho/internal/identity"
)

// File is a cases file.
type File struct {
	// Version of the format; only 1 exists.
	Version int `yaml:"version"`
	// Cases are checked in order.
	Cases []Case `yaml:"cases"`
}

// Case is one request and what must happen to it.
type Case struct {
	// Name says what the case checks; unique in the file.
	Name string `yaml:"name"`
	// Request is the request to send.
	Request Request `yaml:"request"`
	// Expect is the outcome the case demands.
	Expect Expect `yaml:"expect"`
	// Line is where the case starts in the file; set by Load.
	Line int `yaml:"-"`
}

// Request describes the request of a case.
type Request struct {
	// Method defaults to GET.
	Method string `yaml:"method"`
	// Host is the host the client asks for. Required.
	Host string `yaml:"host"`
	// Path defaults to "/"; it is normalised as the server does.
	Path string `yaml:"path"`
	// Query is the raw query string, without "?".
	Query string `yaml:"query"`
	// Headers are request headers.
	Headers map[string]string `yaml:"headers"`
	// SourceIP is the client's address as sekisho resolves it (after trusted
	// proxies). Required.
	SourceIP string `yaml:"source_ip"`
	// Identity is who the request is from; nil is anonymous.
	Identity *Identity `yaml:"identity"`
}

// Identity is the signed-in caller of a case.
type Identity struct {
	// Kind is session (default), apikey, bearer or iap.
	Kind string `yaml:"kind"`
	// User is the principal's name. Required.
	User string `yaml:"user"`
	// Email is the verified email, optional.
	Email string `yaml:"email"`
	// Groups the caller belongs to.
	Groups []string `yaml:"groups"`
	// APIKeyID names the API key for kind apikey (rate-limit key "apikey").
	APIKeyID string `yaml:"apikey_id"`
	// Routes, Methods and Paths are the scope of a kind apikey key, as
	// `sekisho apikey create --route --methods --paths` gives it. No
	// routes: the key is issued for the route the request reaches.
	Routes  []string `yaml:"routes"`
	Methods []string `yaml:"methods"`
	Paths   []string `yaml:"paths"`
}

// Expect is the outcome a case demands. Empty fields are not checked,
// except Action, which is required.
type Expect struct {
	// Action is allow, deny, redirect, throttle, rate_based_ban or login.
	Action string `yaml:"action"`
	// Status is the HTTP status; 0 is not checked.
	Status int `yaml:"status"`
	// Rule is the priority of the rule that decided, "default" when no rule
	// did (the rules' default action or the route's policy decided), ""
	// not checked.
	Rule string `yaml:"rule"`
	// Route is the name of the route the request must reach; "" not checked.
	Route string `yaml:"route"`
}

// Outcome is what the gateway did with a case's request.
type Outcome struct {
	// Action is allow, deny, redirect, throttle, rate_based_ban or login.
	Action string
	// Status is the status the client would get (200 for allow).
	Status int
	// Rule is the priority of the rule that decided; nil when none did.
	Rule *int
	// RuleDescription is that rule's description, for the report.
	RuleDescription string
	// Route is the matched route's name, "" for none.
	Route string
	// Reason is the audit line's reason.
	Reason string
	// Err is a failure to evaluate the case at all.
	Err error
}

// validActions are the actions a case may expect.
var validActions = []string{"allow", "deny", "redirect", "throttle", "rate_based_ban", "login"}

// Load reads and checks a cases file: strict YAML, version 1, unique names,
// valid addresses and actions. Every problem is returned (errors.Join),
// each naming its case and line.
func Load(r io.Reader) ([]Case, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, errors.New("cases: a second YAML document follows the first; one file holds one document")
	}
	if err := yaml.Unmarshal(raw, &doc); err == nil {
		setLines(&doc, f.Cases)
	}
	var errs []error
	if f.Version != 1 {
		errs = append(errs, fmt.Errorf("cases: version %d is not supported; write version: 1", f.Version))
	}
	if len(f.Cases) == 0 {
		errs = append(errs, errors.New("cases: the file has no cases"))
	}
	seen := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		name := fmt.Sprintf("line %d: case %q", c.Line, c.Name)
		bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(name+": "+format, args...)) }
		if strings.TrimSpace(c.Name) == "" {
			bad("has no name")
		} else if seen[c.Name] {
			bad("the name is used twice")
		}
		seen[c.Name] = true
		if c.Request.Host == "" {
			bad("request.host is required")
		}
		if _, err := netip.ParseAddr(c.Request.SourceIP); err != nil {
			bad("request.source_ip %q is not an IP address", c.Request.SourceIP)
		}
		if c.Request.Path != "" && !strings.HasPrefix(c.Request.Path, "/") {
			bad("request.path %q must start with /", c.Request.Path)
		}
		if _, err := url.ParseQuery(c.Request.Query); err != nil {
			bad("request.query: %v", err)
		}
		if id := c.Request.Identity; id != nil {
			if id.User == "" {
				bad("request.identity.user is required (omit identity for an anonymous caller)")
			}
			switch identity.Kind(id.Kind) {
			case "", identity.Session, identity.APIKey, identity.Bearer, identity.IAP:
			default:
				bad("request.identity.kind %q is not session, apikey, bearer or iap", id.Kind)
			}
			if identity.Kind(id.Kind) != identity.APIKey && (len(id.Routes) > 0 || len(id.Methods) > 0 || len(id.Paths) > 0) {
				bad("request.identity.routes, methods and paths are an API key's scope: they need kind apikey")
			}
		}
		if !contains(validActions, c.Expect.Action) {
			bad("expect.action %q is not one of %s", c.Expect.Action, strings.Join(validActions, ", "))
		}
		if r := c.Expect.Rule; r != "" && r != "default" {
			if _, err := strconv.Atoi(r); err != nil {
				bad(`expect.rule %q is not a rule priority or "default"`, r)
			}
		}
		if s := c.Expect.Status; s != 0 && (s < 100 || s > 599) {
			bad("expect.status %d is not an HTTP status", s)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f.Cases, nil
}

// setLines records each case's line from the YAML node tree.
func setLines(doc *yaml.Node, cases []Case) {
	if len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "cases" {
			continue
		}
		for j, n := range root.Content[i+1].Content {
			if j < len(cases) {
				cases[j].Line = n.Line
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// HTTPRequest builds the case's request as the server would receive it
// directly from the client (RemoteAddr is the source IP, no forwarding
// headers), with Host, path, query and headers set.
func (c Case) HTTPRequest() (*http.Request, error) {
	method := c.Request.Method
	if method == "" {
		method = http.MethodGet
	}
	path := c.Request.Path
	if path == "" {
		path = "/"
	}
	target := "http://" + c.Request.Host + path
	if c.Request.Query != "" {
		target += "?" + c.Request.Query
	}
	r, err := http.NewRequest(method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("case %q: %w", c.Name, err)
	}
	ip, err := netip.ParseAddr(c.Request.SourceIP)
	if err != nil {
		return nil, fmt.Errorf("case %q: source_ip: %w", c.Name, err)
	}
	r.RemoteAddr = netip.AddrPortFrom(ip, 40000).String()
	for k, v := range c.Request.Headers {
		r.Header.Set(k, v)
	}
	return r, nil
}

// Identity returns the case's caller; the zero (anonymous) identity when it
// has none.
func (c Case) Identity() identity.Identity {
	id := c.Request.Identity
	if id == nil {
		return identity.Identity{}
	}
	kind := identity.Kind(id.Kind)
	if kind == "" {
		kind = identity.Session
	}
	out := identity.Identity{Kind: kind, User: id.User, Email: id.Email, Groups: id.Groups, Provider: "policytest"}
	if kind == identity.APIKey {
		out.SessionID = id.APIKeyID
		out.Scope = &identity.Scope{Name: id.User, Routes: id.Routes, Methods: id.Methods, PathPrefixes: id.Paths}
	}
	return out
}
