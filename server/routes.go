package server

import (
	"net/http"

	"github.com/latchkey-dev/latchkey/server/ui"
)

// routes is the whole HTTP surface of the server, in one place. Paths are under the issuer's
// path (s.route). POST-only endpoints answer other methods with 405 and Allow: POST
// (methodNotAllowed), and CORS preflights with preflight.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, name string, h http.Handler) {
		mux.Handle(pattern, endpoint(name, s.traceRoute(pattern, h)))
	}

	// Token endpoint (RFC 6749 §3.2) and its neighbours: form-encoded POSTs, never cached.
	for _, e := range []struct {
		path, name string
		h          http.HandlerFunc
	}{
		{pathToken, "token", s.handleToken},
		{pathIntrospect, "introspect", s.handleIntrospect},
		{pathRevoke, "revoke", s.handleRevoke},
	} {
		handle("POST "+s.route(e.path), e.name, chain(e.h, noStore, requestTimeout(RequestTimeout)))
		handle("OPTIONS "+s.route(e.path), e.name, s.preflight(http.MethodPost))
		handle(s.route(e.path), e.name, s.methodNotAllowed(http.MethodPost))
	}

	// Public documents.
	handle("GET "+s.route(pathJWKS), "jwks", http.HandlerFunc(s.handleJWKS))
	handle("OPTIONS "+s.route(pathJWKS), "jwks", s.preflight(http.MethodGet))
	handle("GET "+pathOAuthConfig+s.basePath, "discovery", http.HandlerFunc(s.handleDiscovery))
	handle("GET "+s.route(pathOIDCConfig), "discovery", http.HandlerFunc(s.handleDiscovery))
	if s.basePath != "" {
		// RFC 8414 §3 inserts the well-known suffix before the issuer's path; many clients
		// also try the OpenID Connect form, appended to the issuer, which the line above serves.
		handle("GET "+s.route(pathOAuthConfig), "discovery", http.HandlerFunc(s.handleDiscovery))
	}

	// The authorization code flow: /authorize and the login and consent pages (HTML and
	// redirects, never CORS; authorize.go, login.go), and OpenID Connect userinfo (oidc.go).
	page := func(h http.HandlerFunc) http.Handler { return chain(h, requestTimeout(RequestTimeout)) }
	handle("GET "+s.route(pathAuthorize), "authorize", page(s.handleAuthorize))
	handle("POST "+s.route(pathAuthorize), "authorize", page(s.handleAuthorize))
	handle("GET "+s.route(pathLogin), "login", page(s.handleLoginPage))
	handle("POST "+s.route(pathLogin), "login", page(s.handleLogin))
	handle("GET "+s.route(pathConsent), "consent", page(s.handleConsentPage))
	handle("POST "+s.route(pathConsent), "consent", page(s.handleConsent))
	handle("GET "+s.route(ui.StylesheetPath), "static", s.flow.ui.Stylesheet())
	for _, m := range []string{"GET ", "POST "} {
		handle(m+s.route(pathUserinfo), "userinfo", chain(http.HandlerFunc(s.handleUserinfo), noStore, requestTimeout(RequestTimeout)))
	}
	handle("OPTIONS "+s.route(pathUserinfo), "userinfo", s.preflight(http.MethodGet))

	// Probes.
	handle("GET "+s.route(pathHealthz), "healthz", http.HandlerFunc(s.handleHealthz))
	handle("GET "+s.route(pathReadyz), "readyz", http.HandlerFunc(s.handleReadyz))

	// The trace* middleware (tracing.go) is there only with Options.Tracing.
	return s.traceHTTP(chain(mux,
		withRequestID,
		s.observe,
		s.traceRequest,
		s.recoverPanic,
		withSecurityHeaders,
		limitBody,
	))
}
