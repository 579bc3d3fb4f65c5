package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/rules/policytest"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/web"
)

// PolicyEvaluator returns the function `sekisho policy test` runs each case
// through: the config's own router, rules (edge and identity phases),
// policies and max_age, in the real pipeline, with the case's identity in
// place of a credential and a stand-in upstream that answers 200. It opens
// no store and contacts nothing; rate limits live in memory for the run,
// so cases can check that the N+1st request is throttled.
func PolicyEvaluator(cfg *config.Config, secrets secret.Resolver) (func(policytest.Case) policytest.Outcome, error) {
	checked, err := CheckKeep(cfg, secrets, nil)
	if err != nil {
		return nil, err
	}
	// The generation serve would build, through the same build, with the
	// rule sets Check compiled and its in-memory limiter (rate limits live
	// for the run). Then the case's identity stands in for credentials, a
	// stub answering 200 for the apps and for sekisho's own pages, and the
	// case's source_ip is the client (no proxy is trusted).
	g, _, err := dryGeneration(cfg, secrets, checked.sets, checked.waf, checked.limiter)
	if err != nil {
		return nil, err
	}
	pl := g.pipeline
	if pl.Clients, err = clientip.New(nil); err != nil {
		return nil, err
	}
	pl.Authn = caseIdentity{}
	pl.Portal = web.EndpointFunc(func(w http.ResponseWriter, r *http.Request) web.Outcome {
		web.Error(w, r, http.StatusNotFound, "gateway path")
		return web.Outcome{Reason: "gateway path"}
	})
	allowed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "allowed") })
	pl.Router.Each(func(rt *route.Route) { rt.Upstream = allowed })
	return func(c policytest.Case) policytest.Outcome {
		req, err := c.HTTPRequest()
		if err != nil {
			return policytest.Outcome{Err: err}
		}
		info := &reqinfo.Info{ID: "policy-test"}
		ctx := reqinfo.With(context.Background(), info)
		if c.Request.Identity != nil {
			ctx = context.WithValue(ctx, caseIdentityKey{}, c.Identity())
		}
		rec := httptest.NewRecorder()
		pl.ServeHTTP(rec, req.WithContext(ctx))
		out := policytest.Outcome{Status: rec.Code, Route: info.Route, Reason: info.Reason, Action: info.Decision}
		if info.Decision == "deny" {
			switch info.RuleAction {
			case "redirect", "throttle", "rate_based_ban":
				out.Action = info.RuleAction
			}
		}
		if info.Rule != "" {
			num, desc, _ := strings.Cut(info.Rule, " ")
			if n, err := strconv.Atoi(num); err == nil {
				out.Rule, out.RuleDescription = &n, desc
			}
		}
		return out
	}, nil
}

// caseIdentity authenticates every request as the identity its case names.
type caseIdentity struct{}

type caseIdentityKey struct{}

// An API key without routes is issued for the route the request reaches.
func (caseIdentity) Authenticate(w http.ResponseWriter, r *http.Request, in authn.Request) (authn.Result, error) {
	id, _ := r.Context().Value(caseIdentityKey{}).(identity.Identity)
	if sc := id.Scope; sc != nil && len(sc.Routes) == 0 {
		scoped := *sc
		scoped.Routes = []string{in.Route}
		id.Scope = &scoped
	}
	return authn.Result{Identity: id}, nil
}
