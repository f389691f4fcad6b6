package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/latchkey-dev/latchkey/server/clients"
)

// CORS (SECURITY-CASES 99, OAuth 2.1 §3.1, §3.2).
//
//   - /token, /introspect and /revoke: Access-Control-Allow-Origin echoes the Origin only when
//     the authenticated client lists it in spec.corsOrigins. The check happens after client
//     authentication, so an error before that (invalid_client) is unreadable cross-origin.
//   - /jwks and discovery, which are public documents with no client in the request: the Origin
//     is echoed when any Ready client lists it.
//   - Preflights (OPTIONS) carry no credentials and no body, so no client can be identified:
//     they are answered for an origin some Ready client lists, for the endpoint's method only.
//   - Never "*", never Access-Control-Allow-Credentials (the endpoints use no cookies; the
//     Authorization header is allowed as a request header instead), never for Origin "null"
//     (opaque origins: sandboxed frames, file:, redirects), and never on /authorize, whose
//     handler does not call these helpers.
const (
	corsAllowHeaders = "Authorization, Content-Type"
	corsMaxAge       = 600
)

// usableOrigin reports whether an Origin header can ever be allowed.
func usableOrigin(origin string) bool {
	return origin != "" && origin != "null" && !strings.ContainsAny(origin, " ,\r\n")
}

// corsForClient allows the request's Origin if c registered it.
func (s *Server) corsForClient(w http.ResponseWriter, r *http.Request, c *clients.Client) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	w.Header().Add("Vary", "Origin")
	if usableOrigin(origin) && slices.Contains(c.Spec.CORSOrigins, origin) {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
}

// corsForRegisteredOrigin allows the request's Origin if any Ready client registered it.
func (s *Server) corsForRegisteredOrigin(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	w.Header().Add("Vary", "Origin")
	if !usableOrigin(origin) {
		return false
	}
	ok, err := s.registry.OriginRegistered(r.Context(), origin)
	if err != nil || !ok {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return true
}

// preflight answers a CORS preflight for an endpoint that accepts method.
func (s *Server) preflight(method string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).outcome = "ok"
		w.Header().Set("Allow", method+", OPTIONS")
		if r.Header.Get("Access-Control-Request-Method") == method && s.corsForRegisteredOrigin(w, r) {
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", method)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
