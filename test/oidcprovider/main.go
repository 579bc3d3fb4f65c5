// Command oidcprovider is a small, real OpenID provider for sekisho's tests,
// built on zitadel's certified op library (github.com/zitadel/oidc/v3/pkg/op).
// It serves discovery, the authorization endpoint with PKCE (S256), token
// (code and refresh_token grants), userinfo, JWKS and end_session, with its
// own HTML sign-in form, for one confidential client given by flags and the
// users in a JSON file.
//
// It listens on 127.0.0.1 only. With -port 0 it picks a free port; either way
// it prints one line "issuer=http://127.0.0.1:PORT" on stdout once it
// accepts connections, so a test can read the issuer.
//
// Users file: a JSON array of
//
//	{"username": "alice", "password": "pw", "email": "alice@example.com",
//	 "email_verified": true, "groups": ["admins"],
//	 "claims": {"hd": "example.com", "realm_access": {"roles": ["r"]}}}
//
// The ID token carries sub (= username), email, email_verified,
// preferred_username, groups (when non-empty) and every entry of claims.
//
// The provider keeps a single-sign-on session in a cookie: a second
// authorization request from the same browser is answered without the form,
// unless it asks for prompt=login or a max_age the session's sign-in is older
// than. -ignore-max-age makes it skip that check (a non-compliant provider,
// for testing that the relying party rejects a stale auth_time itself).
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// user is one entry of the users file.
type user struct {
	Username      string         `json:"username"`
	Password      string         `json:"password"`
	Email         string         `json:"email"`
	EmailVerified bool           `json:"email_verified"`
	Groups        []string       `json:"groups"`
	Claims        map[string]any `json:"claims"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "oidcprovider:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("oidcprovider", flag.ContinueOnError)
	port := fs.Int("port", 0, "TCP port on 127.0.0.1 (0: a free one)")
	usersFile := fs.String("users", "", "JSON file with the users (required)")
	clientID := fs.String("client-id", "sekisho", "the client's id")
	clientSecret := fs.String("client-secret", "", "the client's secret (required)")
	redirects := fs.String("redirect-uris", "", "comma-separated redirect URIs registered for the client (required)")
	postLogout := fs.String("post-logout-uris", "", "comma-separated post-logout redirect URIs")
	ignoreMaxAge := fs.Bool("ignore-max-age", false, "answer from the SSO session even when prompt=login or max_age asks for a fresh sign-in")
	idTokenLife := fs.Duration("id-token-lifetime", time.Hour, "lifetime of ID tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *usersFile == "" || *clientSecret == "" || *redirects == "" {
		return errors.New("-users, -client-secret and -redirect-uris are required")
	}
	raw, err := os.ReadFile(*usersFile)
	if err != nil {
		return err
	}
	var users []user
	if err := json.Unmarshal(raw, &users); err != nil {
		return fmt.Errorf("users file %s: %w", *usersFile, err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		return err
	}
	issuer := "http://" + ln.Addr().String()

	st, err := newStorage(users, &client{
		id:             *clientID,
		secret:         *clientSecret,
		redirectURIs:   splitList(*redirects),
		postLogoutURIs: splitList(*postLogout),
		idTokenLife:    *idTokenLife,
	}, *ignoreMaxAge)
	if err != nil {
		return err
	}
	cfg := &op.Config{
		CryptoKey:                sha256.Sum256([]byte(rand.Text())),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
	}
	provider, err := op.NewProvider(cfg, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return err
	}
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux := http.NewServeMux()
	lg := &login{st: st, callback: op.AuthCallbackURL(provider)}
	mux.Handle("/login", interceptor.HandlerFunc(lg.ServeHTTP))
	mux.HandleFunc("/logged-out", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "signed out of the test provider")
	})
	mux.Handle("/", provider)

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	slog.Info("oidcprovider listening", "issuer", issuer)
	fmt.Printf("issuer=%s\n", issuer)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
