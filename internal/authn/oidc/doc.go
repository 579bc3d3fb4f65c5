// Package oidc signs browsers in with Google or any OpenID Connect provider
// (Entra ID, Okta, Keycloak, Dex, Authentik, Zitadel, ...) and turns the
// provider's ID token into a sekisho session.
//
// # The flow
//
// GET /.sekisho/oidc/{provider}/start?rd=/path starts the authorization-code
// flow with PKCE (S256), a random state and a random nonce. All three, the
// post-login target and the time are sealed (AES-256-GCM, the session
// keyring) into a short-lived cookie bound to the browser, one per flow, so
// two tabs can sign in at once. GET /.sekisho/oidc/callback completes it:
// the state in the query must name a flow cookie this browser holds, the
// flow must be younger than Options.StateTTL (10 min) and unused (each state
// works once: a replayed callback URL is refused), the code is exchanged
// with the PKCE verifier, and the ID token must verify: signature by the
// provider's published keys (never "alg": "none"), issuer, audience = our
// client ID, expiry, the flow's nonce, and, when the route asked for a
// recent sign-in, auth_time. Every failure is a page with a plain message
// and the request id; the cause goes to the log.
//
// The callback is on the host the user came to: the redirect URI is
// scheme://host/.sekisho/oidc/callback, built from the request by
// Options.Origin. Register that exact URI at the provider for every host
// users reach sekisho on (and scheme://host/.sekisho/oidc/signed-out as the
// post-logout redirect URI, if the provider supports RP-initiated logout).
//
// # Who the user is
//
// The session's User is the email address when the ID token says it is
// verified (email_verified true; or always, with the loud
// ProviderOptions.InsecureTrustUnverifiedEmail, for providers such as Entra
// ID that do not send email_verified) and the claim is exactly one plain
// ASCII address: one @, a dot-atom local part, a domain of at least two DNS
// labels; no display name ("Alice <a@example.com>"), quotes, comments,
// spaces, domain literal or trailing dot. Otherwise it is "<provider>:<sub>",
// which cannot collide with a local account name (those have no ':'): an
// email claim "alice" never passes for the local account alice. The address
// is lower-cased whole (policies compare emails and domains without case).
// Email is set only when it is the user. Provider is the configured name,
// AuthTime the token's auth_time (or the time of the callback if absent).
// Policies match Email, Domains (of Email) and Groups.
//
// # Groups
//
// ProviderOptions.GroupsClaim names the ID token claim holding groups:
// "groups", "roles", or a dotted path into nested objects such as
// "realm_access.roles" (Keycloak). A claim whose name itself contains dots
// ("https://example.com/groups") is found by its full name first. The value
// may be a string (one group) or an array of strings. Only groups listed in
// ProviderOptions.KeepGroups are kept when it is set: every group costs
// session cookie bytes, and the cookie stays under 1 KiB.
//
// Google Workspace groups: Google's ID token has no groups claim, whatever
// the scopes. To admit by Workspace group, either put a provider that
// federates Google and adds groups to its tokens in front (Keycloak with
// the Google identity provider and a group mapper, Zitadel with Google as
// an IdP and an action that adds groups, Dex with the google connector and
// its Admin SDK service account), or use Cloud Identity / Workspace SAML-to-
// OIDC through such a broker. With the google preset alone, admit by
// Domains (checked against the token's hd claim via AllowedDomains) or
// Emails.
//
// # Google
//
// Preset "google" sets the issuer https://accounts.google.com and the label
// "Google". AllowedDomains restricts sign-in to Workspace domains: the ID
// token's hd claim (set by Google only for Workspace accounts) must be one of
// them. The login hint sent to Google (hd=) only preselects an account; it is
// never trusted.
//
// # Re-authentication, refresh and sign-out
//
// A route may demand a recent sign-in (max_age): NeedsReAuth tells the
// pipeline the session's AuthTime is too old and ReAuthURL sends the browser
// through the provider again with max_age and prompt=login; the callback
// refuses an ID token whose auth_time is older than asked, whatever the
// provider did.
//
// When the provider returns a refresh token (usually when Scopes include
// offline_access), it is kept server-side in store.OIDCTokens keyed by the
// session ID, sealed with the session keyring; so is the ID token, for the
// id_token_hint of RP-initiated logout. Refresh uses the refresh token to
// re-read the user's email and groups; EndSession returns the provider's
// end_session_endpoint URL when discovery lists one, and otherwise a local
// page that says plainly that the user is still signed in at the provider.
//
// # Outages
//
// Nothing on the path of an ordinary request talks to the provider:
// sessions are cookies. Discovery is lazy (the gateway starts while the
// provider is down), cached for Options.DiscoveryTTL, and every provider
// call (discovery, token, JWKS) is bounded by Options.Timeout (10 s).
//
// Each provider's reachability is tracked (Handler.Reachable): a call that
// fails with a connection error, a timeout, a 5xx answer or a broken
// discovery document marks it unreachable (a 5xx to a code exchange does
// not: anyone can bring a garbage code), and it stays so until a call to
// it succeeds. While it is unreachable, starting a sign-in with it gets a
// 503 page that names the provider and the request id instead of a redirect
// to a dead provider, and sign-out does not send the browser there either;
// after Options.RetryAfter (5 s) the next start probes the discovery
// document again (one probe shared by all, bounded by Options.Timeout). A
// sign-in start also probes first when nothing was heard from the provider
// for RetryAfter, so even with discovery cached the first browser after an
// outage began is not sent away. A browser that hangs up mid-call does not
// mark a provider down, and refresh of signed-in sessions treats an outage
// as nothing (the session stays).
//
// The used-state set is in memory, per replica: with several replicas a
// callback replayed against another replica within the state's 10 minutes
// is stopped by the provider instead (an authorization code works once).
package oidc
