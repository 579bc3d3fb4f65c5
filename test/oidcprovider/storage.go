package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is an in-memory op.Storage for one client and a fixed user list.
type storage struct {
	mu           sync.Mutex
	users        map[string]user
	client       *client
	ignoreMaxAge bool
	key          *ecdsa.PrivateKey
	keyID        string

	requests map[string]*authRequest // by request id
	codes    map[string]string       // code -> request id
	access   map[string]*token       // access token id -> token
	refresh  map[string]*token       // refresh token -> token
	sso      map[string]ssoSession   // sso cookie value -> session
}

type ssoSession struct {
	user     string
	authTime time.Time
}

type token struct {
	user     string
	clientID string
	scopes   []string
	authTime time.Time
	expires  time.Time
}

var _ op.Storage = (*storage)(nil)

func newStorage(users []user, c *client, ignoreMaxAge bool) (*storage, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &storage{
		users: map[string]user{}, client: c, ignoreMaxAge: ignoreMaxAge, key: key, keyID: rand.Text()[:8],
		requests: map[string]*authRequest{}, codes: map[string]string{}, access: map[string]*token{},
		refresh: map[string]*token{}, sso: map[string]ssoSession{},
	}
	for _, u := range users {
		if u.Username == "" {
			return nil, errors.New("users file: a user has no username")
		}
		s.users[u.Username] = u
	}
	return s, nil
}

// authRequest implements op.AuthRequest.
type authRequest struct {
	id, clientID, redirectURI, state, nonce string
	scopes                                  []string
	responseType                            oidc.ResponseType
	responseMode                            oidc.ResponseMode
	challenge                               *oidc.CodeChallenge
	maxAge                                  *time.Duration
	user                                    string
	authTime                                time.Time
	done                                    bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.user }
func (a *authRequest) Done() bool                            { return a.done }

// refreshRequest implements op.RefreshTokenRequest.
type refreshRequest struct{ t *token }

func (r *refreshRequest) GetAMR() []string             { return []string{"pwd"} }
func (r *refreshRequest) GetAudience() []string        { return []string{r.t.clientID} }
func (r *refreshRequest) GetAuthTime() time.Time       { return r.t.authTime }
func (r *refreshRequest) GetClientID() string          { return r.t.clientID }
func (r *refreshRequest) GetScopes() []string          { return r.t.scopes }
func (r *refreshRequest) GetSubject() string           { return r.t.user }
func (r *refreshRequest) SetCurrentScopes(sc []string) { r.t.scopes = sc }

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if slices.Equal(req.Prompt, []string{oidc.PromptNone}) {
		return nil, oidc.ErrLoginRequired()
	}
	a := &authRequest{
		id: rand.Text(), clientID: req.ClientID, redirectURI: req.RedirectURI, state: req.State,
		nonce: req.Nonce, scopes: req.Scopes, responseType: req.ResponseType, responseMode: req.ResponseMode,
	}
	if req.CodeChallenge != "" {
		a.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	if req.MaxAge != nil {
		d := time.Duration(*req.MaxAge) * time.Second
		a.maxAge = &d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.requests[id]; ok {
		return a, nil
	}
	return nil, errors.New("auth request not found")
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or expired")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for c, rid := range s.codes {
		if rid == id {
			delete(s.codes, c)
		}
	}
	return nil
}

// completeLogin marks the request as signed in by user at authTime.
func (s *storage) completeLogin(id, username string, authTime time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok {
		return errors.New("auth request not found or expired")
	}
	a.user, a.authTime, a.done = username, authTime, true
	return nil
}

// checkPassword returns the user if the password matches.
func (s *storage) checkPassword(username, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	return ok && u.Password != "" && u.Password == password
}

// ssoFor returns the SSO session usable for request id, if any: it must
// exist and, unless ignoreMaxAge, be younger than the request's max_age
// (prompt=login arrives here as max_age 0).
func (s *storage) ssoFor(cookie, id string) (ssoSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sso[cookie]
	a, ok2 := s.requests[id]
	if !ok || !ok2 {
		return ssoSession{}, false
	}
	if a.maxAge != nil && !s.ignoreMaxAge && time.Since(sess.authTime) >= *a.maxAge {
		return ssoSession{}, false
	}
	return sess, true
}

func (s *storage) newSSO(username string, authTime time.Time) string {
	v := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sso[v] = ssoSession{user: username, authTime: authTime}
	return v
}

func (s *storage) newToken(req op.TokenRequest) *token {
	t := &token{user: req.GetSubject(), scopes: req.GetScopes(), expires: time.Now().Add(5 * time.Minute)}
	switch r := req.(type) {
	case *authRequest:
		t.clientID, t.authTime = r.clientID, r.authTime
	case *refreshRequest:
		t.clientID, t.authTime = r.t.clientID, r.t.authTime
	}
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	t := s.newToken(req)
	id := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access[id] = t
	return id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	t := s.newToken(req)
	id, rt := rand.Text(), rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		if _, ok := s.refresh[current]; !ok {
			return "", "", time.Time{}, errors.New("refresh token unknown or already used")
		}
		delete(s.refresh, current) // rotation: each refresh token works once
	}
	s.access[id] = t
	s.refresh[rt] = t
	return id, rt, t.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, rt string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[rt]
	if !ok {
		return nil, op.ErrInvalidRefreshToken
	}
	c := *t
	return &refreshRequest{t: &c}, nil
}

// TerminateSession ends the user's SSO sessions and tokens (end_session).
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.sso {
		if v.user == userID {
			delete(s.sso, k)
		}
	}
	for k, v := range s.refresh {
		if v.user == userID && v.clientID == clientID {
			delete(s.refresh, k)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tok, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, tok)
	delete(s.access, tok)
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, tok string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[tok]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.user, tok, nil
}

type signingKey struct{ s *storage }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k signingKey) Key() any                                    { return k.s.key }
func (k signingKey) ID() string                                  { return k.s.keyID }

type publicKey struct{ s *storage }

func (k publicKey) ID() string                         { return k.s.keyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.s.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{s}, nil }
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s}}, nil }

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, fmt.Errorf("client %q not found", id)
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.client.id || secret != s.client.secret {
		return errors.New("invalid client id or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest puts the user's claims into the ID token.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(ui, req.GetSubject(), scopes)
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	t, ok := s.access[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("access token invalid or expired")
	}
	return s.setUserinfo(ui, t.user, t.scopes)
}

func (s *storage) setUserinfo(ui *oidc.UserInfo, username string, scopes []string) error {
	s.mu.Lock()
	u, ok := s.users[username]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("user %q not found", username)
	}
	ui.Subject = u.Username
	if slices.Contains(scopes, oidc.ScopeEmail) {
		ui.Email, ui.EmailVerified = u.Email, oidc.Bool(u.EmailVerified)
	}
	if slices.Contains(scopes, oidc.ScopeProfile) {
		ui.PreferredUsername = u.Username
	}
	if len(u.Groups) > 0 {
		ui.AppendClaims("groups", u.Groups)
	}
	for k, v := range u.Claims {
		ui.AppendClaims(k, v)
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// client implements op.Client: a confidential web client.
type client struct {
	id, secret     string
	redirectURIs   []string
	postLogoutURIs []string
	idTokenLife    time.Duration
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.postLogoutURIs }
func (c *client) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string            { return "/login?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.idTokenLife }
func (c *client) DevMode() bool                        { return true } // allows http redirect URIs on loopback
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
