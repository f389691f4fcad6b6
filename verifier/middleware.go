package verifier

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

type contextKey struct{}

// authInfo is what the middleware puts in the request context: the claims and the verifier that
// accepted them, so RequireScope and RequireRole of another verifier (another audience) do not
// take claims it never checked.
type authInfo struct {
	v      *Verifier
	claims *Claims
}

// ClaimsFromContext returns the claims the middleware of a Verifier put in ctx.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	info, ok := ctx.Value(contextKey{}).(*authInfo)
	if !ok {
		return nil, false
	}
	return info.claims, true
}

// Middleware accepts only requests with a valid access token in the Authorization header
// (RFC 6750 §2.1; the "Bearer" scheme is matched case-insensitively) and passes them on with
// the token's claims in the context (ClaimsFromContext). It answers the others itself
// (RFC 6750 §3):
//
//   - no Authorization header, or another scheme: 401 with a challenge that has no error;
//   - two Authorization headers, a Bearer header that is not one token, or an access_token in
//     the query string (RFC 6750 §2.3 is not supported, since URLs end up in logs): 400
//     invalid_request;
//   - a token that fails Verify: 401 invalid_token;
//   - a dependency failure (ErrUnavailable): 503 temporarily_unavailable.
//
// Error responses carry a JSON body {"error", "error_description"} and Cache-Control: no-store.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := v.authenticate(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, &authInfo{v: v, claims: c})))
	})
}

// RequireScope returns middleware that lets through only tokens whose "scope" contains scope,
// and answers the others 403 insufficient_scope naming it (RFC 6750 §3.1). It authenticates the
// request itself unless this Verifier's Middleware already did, so it is safe on its own. It
// panics if scope is not a valid scope token (RFC 6749 §3.3), which is a programming error.
func (v *Verifier) RequireScope(scope string) func(http.Handler) http.Handler {
	if !validScope(scope) {
		panic(fmt.Sprintf("verifier: RequireScope(%q): not a valid scope token", scope))
	}
	desc := "the access token lacks scope " + scope
	return func(next http.Handler) http.Handler {
		return v.require(next, func(c *Claims) bool { return c.HasScope(scope) }, desc, scope)
	}
}

// RequireRole returns middleware that lets through only tokens whose "roles" contain role, and
// answers the others 403 insufficient_scope (client tokens have no roles). Like RequireScope it
// authenticates the request itself if needed, and panics on a role that cannot be named in an
// error_description (quotes, backslashes, control or non-ASCII characters).
func (v *Verifier) RequireRole(role string) func(http.Handler) http.Handler {
	if role == "" || !validDescription(role) {
		panic(fmt.Sprintf("verifier: RequireRole(%q): not a usable role name", role))
	}
	desc := "the access token lacks role " + role
	return func(next http.Handler) http.Handler {
		return v.require(next, func(c *Claims) bool { return c.HasRole(role) }, desc, "")
	}
}

func (v *Verifier) require(next http.Handler, ok func(*Claims) bool, desc, scope string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := r.Context().Value(contextKey{}).(*authInfo)
		if info == nil || info.v != v {
			c, authed := v.authenticate(w, r)
			if !authed {
				return
			}
			info = &authInfo{v: v, claims: c}
			r = r.WithContext(context.WithValue(r.Context(), contextKey{}, info))
		}
		if !ok(info.claims) {
			v.writeError(w, http.StatusForbidden, "insufficient_scope", desc, scope)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate extracts and verifies the bearer token, or writes the error response.
func (v *Verifier) authenticate(w http.ResponseWriter, r *http.Request) (*Claims, bool) {
	if strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		v.writeError(w, http.StatusBadRequest, "invalid_request", "access tokens in the query string are not accepted", "")
		return nil, false
	}
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		v.writeError(w, http.StatusUnauthorized, "", "a bearer token is required", "")
		return nil, false
	case 1:
	default:
		v.writeError(w, http.StatusBadRequest, "invalid_request", "more than one Authorization header", "")
		return nil, false
	}
	scheme, token, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		v.writeError(w, http.StatusUnauthorized, "", "a bearer token is required", "")
		return nil, false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t,") {
		v.writeError(w, http.StatusBadRequest, "invalid_request", "the Authorization header is not one bearer token", "")
		return nil, false
	}
	c, err := v.Verify(r.Context(), token)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			w.Header().Set("Retry-After", "5")
			v.writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the access token cannot be checked now", "")
			return nil, false
		}
		v.writeError(w, http.StatusUnauthorized, "invalid_token", describe(err), "")
		return nil, false
	}
	return c, true
}

// describe is the error_description of a rejected token: a fixed phrase per class, never any
// part of the token.
func describe(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return "the access token expired"
	case errors.Is(err, ErrNotYetValid):
		return "the access token is not valid yet"
	case errors.Is(err, ErrAudience):
		return "the access token is not meant for this resource"
	case errors.Is(err, ErrInactive):
		return "the access token is no longer active"
	default:
		return "the access token is invalid"
	}
}

// writeError writes an RFC 6750 §3 response. code is empty when the request carried no token
// (§3.1: then the challenge has no error attribute).
func (v *Verifier) writeError(w http.ResponseWriter, status int, code, desc, scope string) {
	var b strings.Builder
	b.WriteString("Bearer realm=")
	b.WriteString(quote(v.realm))
	if code != "" && status != http.StatusServiceUnavailable {
		b.WriteString(`, error="` + code + `", error_description="` + desc + `"`)
		if scope != "" {
			b.WriteString(`, scope="` + scope + `"`)
		}
	}
	h := w.Header()
	if status != http.StatusServiceUnavailable {
		h.Set("WWW-Authenticate", b.String())
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	body := `{"error_description":"` + desc + `"}`
	if code != "" {
		body = `{"error":"` + code + `","error_description":"` + desc + `"`
		if scope != "" {
			body += `,"scope":"` + scope + `"`
		}
		body += "}"
	}
	_, _ = w.Write([]byte(body + "\n"))
}

// quote makes an RFC 9110 §5.6.4 quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// validScope: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validDescription: error_description characters (RFC 6750 §3): %x20-21 / %x23-5B / %x5D-7E.
func validDescription(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
