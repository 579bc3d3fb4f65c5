package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authz"
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
	// The rule sets Check compiled, with its in-memory limiter: rate
	// limits live for the run.
	discard := slog.New(slog.DiscardHandler)
	compiled := checked.sets
	clients, err := clientip.New(nil) // the case's source_ip is already the resolved client
	if err != nil {
		return nil, err
	}
	pl := &route.Pipeline{
		Router: &route.Router[*route.Route]{}, Authn: caseIdentity{}, Clients: clients,
		Portal: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			web.Error(w, r, http.StatusNotFound, "gateway path")
		}),
		Logger: discard,
	}
	allowed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "allowed") })
	for _, rc := range cfg.Routes {
		pl.Router.Add(rc.Host, rc.Path, &route.Route{Name: rc.Name, Policy: authz.CompileRoute(rc.Name, rc.Policy, rc.Auth.MaxAge.D()), Upstream: allowed,
			Rules: compiled[rc.Name]})
	}
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
