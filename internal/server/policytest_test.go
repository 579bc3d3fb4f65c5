package server

import (
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/rules/policytest"
	"github.com/sekisho/sekisho/internal/secret"
)

// policy test runs an API key's scope through authz as the gateway does:
// a read-only key cannot write, a key for another app is refused, and a
// key without routes is issued for the route the request reaches.
func TestPolicyTestChecksAPIKeyScope(t *testing.T) {
	c := testConfig(t, "")
	eval, err := PolicyEvaluator(c, secret.Resolver{})
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policytest.Load(strings.NewReader(`version: 1
cases:
  - name: read-only key writing
    request: {method: POST, source_ip: 192.0.2.1, host: app.example.com, path: /v1/run, identity: {kind: apikey, user: rep, methods: [GET]}}
    expect: {action: deny, status: 401}
  - name: key for another app
    request: {source_ip: 192.0.2.1, host: app.example.com, path: /, identity: {kind: apikey, user: ci, routes: [dify]}}
    expect: {action: deny, status: 401}
  - name: key for this route
    request: {source_ip: 192.0.2.1, host: app.example.com, path: /v1/run, identity: {kind: apikey, user: ci, paths: [/v1]}}
    expect: {action: allow, status: 200}
  - name: key outside its paths
    request: {source_ip: 192.0.2.1, host: app.example.com, path: /admin, identity: {kind: apikey, user: ci, paths: [/v1]}}
    expect: {action: deny, status: 401}
`))
	if err != nil {
		t.Fatal(err)
	}
	if rep := policytest.Run(cases, eval); !rep.OK() || rep.Passed != 4 {
		t.Fatalf("scope cases:\n%s", rep)
	}
	if _, err := policytest.Load(strings.NewReader(`version: 1
cases:
  - name: scope on a session
    request: {source_ip: 192.0.2.1, host: app.example.com, path: /, identity: {kind: session, user: ana, routes: [app]}}
    expect: {action: allow}
`)); err == nil || !strings.Contains(err.Error(), "need kind apikey") {
		t.Errorf("scope on a session identity: %v, want an error", err)
	}
}
