// Package server is the HTTP edge of Latchkey's OAuth 2.1 authorization server: the
// authorization endpoint with its login and consent pages, the token, introspection (RFC 7662)
// and revocation (RFC 7009) endpoints, OpenID Connect userinfo, discovery (RFC 8414), the JWKS,
// health probes, metrics, and the middleware around them.
//
// Every replica serves; the server only reads the cluster (OAuthClients, client Secrets,
// SigningKeys, key Secrets and JWKS ConfigMaps) through a read-only client.Reader, and keeps
// every piece of mutable token state in a store.Store. Routes are listed in routes.go.
//
// The token endpoint owns the steps every grant shares (parse the form once, authenticate the
// client, check the grant is registered and allowed, narrow the scope) and dispatches to a
// grant handler from a registry (grants.go); a grant returns a response or an error, and only
// the endpoint writes. OAuth errors are values of package oautherr, mapped to HTTP status in
// one place (oautherr.Error.Status).
//
// # Sub-packages
//
//   - oautherr: OAuth error values, the status mapping, the JSON error writer.
//   - httpx: strict form parsing, JSON responses, client address behind trusted proxies.
//   - clients: client lookup by client_id in the cache, client authentication
//     (client_secret_basic, client_secret_post, private_key_jwt, none) and the guarded fetcher
//     of client JWKS.
//   - keyring: the signing key (keymaterial.ActiveAt over published keys) and the JWKS.
//   - accesstoken: RFC 9068 access tokens, minted and verified.
//   - scope: RFC 6749 §3.3 scope parsing and narrowing.
//   - tokenid: the formats of family ids, jtis, refresh tokens and authorization codes.
//   - pkce, redirect: PKCE S256 (RFC 7636) and redirect URI matching for /authorize.
//   - users: the users Secret, and password checks at equal cost for unknown users.
//   - ui: the login, consent and error pages, their stylesheet and security headers.
//
// The authorization code flow lives in authorize.go (/authorize), login.go (the login and
// consent pages, sessions, brute-force limits), flow.go (cookies and options),
// grant_authorization_code.go, grant_refresh_token.go and oidc.go (ID tokens, userinfo,
// discovery members); docs/login.md describes it for operators.
//
// # Decisions
//
// Where DESIGN.md and SECURITY-CASES.md leave room, the server does this:
//
//   - client_credentials without a scope parameter gets all of the client's spec.scopes (the
//     pre-defined default RFC 6749 §3.3 allows); with one, exactly the (valid) scopes asked.
//   - A client without spec.audiences gets aud = its client_id. One audience is a JSON string,
//     several an array.
//   - The sub of a client_credentials token is "client:<client_id>", and it has no roles.
//   - invalid_client always carries WWW-Authenticate: Basic realm="<issuer>", whichever method
//     failed: Basic is the one HTTP scheme the endpoints take, and RFC 9110 requires a
//     challenge on every 401. Its body is the same for an unknown client, a client that is not
//     Ready, a wrong secret, a wrong method and a bad assertion; the reason is logged.
//   - A body over 64 KiB or with more than 64 parameters is 400 invalid_request (not 413), so
//     the status mapping stays in one place. Other methods on the POST endpoints are 405 with
//     Allow: POST and an invalid_request body.
//   - private_key_jwt: aud must be exactly the issuer as a JSON string (D4); no legacy switch
//     for the token endpoint URL is offered. exp at most 5 min ahead; 30 s leeway.
//   - Introspection (D7): the caller's own tokens, and access tokens whose aud intersects the
//     caller's spec.audiences. Refresh tokens only by their own client. Public clients cannot
//     introspect. A refresh token's exp is its family's absolute expiry (its idle expiry is not
//     known without rotating it).
//   - Revocation: another client's token is 400 unauthorized_client (fosite). Revoking an
//     access token revokes only that token; revoking a refresh token revokes its family.
//   - CORS: on /token, /introspect and /revoke, the Origin is allowed when the authenticated
//     client lists it; on /jwks, discovery and preflights, when any Ready client lists it. Never
//     "*", never credentials, never for "null".
//   - /jwks max-age = min(5 min, the smallest prePublish); discovery max-age 5 min.
//   - A request of the token, introspection or revocation endpoint is bounded by
//     RequestTimeout; a store that hangs is 503 temporarily_unavailable at the deadline.
//   - Each of those endpoints counts requests per client (spec.rateLimit, default 6000 a
//     minute); past the limit, and for a client_id with too many failed authentications, the
//     answer is 429 slow_down with Retry-After (server/ratelimit).
//   - The keyring keeps the last good copy of each key in memory, so a deleted or corrupt key
//     Secret does not stop signing while its kid stays published, unrevoked and in its window.
//   - /authorize: until the client and the redirect URI are verified, errors are an HTML page
//     (400, no redirect); after, every error redirects at once with state and iss (decision
//     D3, SECURITY-CASES 12), before any login.
//   - A refresh token is issued whenever the client lists the refresh_token grant (no
//     offline_access needed); an ID token is issued for the openid scope, at the code exchange
//     and at every refresh whose access token keeps openid.
//   - The token request's redirect_uri must repeat the authorization request's when that one
//     sent it (RFC 6749 §4.1.3); it may be omitted only when the authorization request did.
//   - A refresh re-checks the grant: a scope the client dropped, or a user gone from the users
//     Secret, fails it and revokes the family; audiences are the client's current ones.
package server
