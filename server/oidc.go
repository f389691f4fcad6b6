package server

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/users"
)

// OpenID Connect Core 1.0 on top of the authorization code flow: the ID token, the userinfo
// endpoint and the discovery members, so that oauth2-proxy, Grafana, Argo CD and other OIDC
// relying parties can log in through Latchkey.
//
//   - The scope openid makes the token response carry an id_token: a JWS signed with the same
//     key as the access tokens but with typ "JWT", never "at+jwt", so it cannot pass for an
//     access token (RFC 9068 §4). Claims: iss, sub (the username), aud (the client_id, a
//     string), exp (the access token's), iat, auth_time, nonce (when the request had one),
//     at_hash, azp; email and email_verified with the scope email; name and
//     preferred_username with the scope profile.
//   - email_verified is true: addresses in the users Secret are written by the operator, who
//     vouches for them (relying parties such as oauth2-proxy refuse unverified ones).
//   - A refresh whose access token keeps openid gets a new id_token too (OpenID Connect Core
//     §12.2): same iss, sub, aud, azp and the original auth_time, no nonce.
//   - Subjects are public (the username): Latchkey has one user directory per issuer.

// Scopes and claims of OpenID Connect Core 1.0 §5.4.
const (
	scopeOpenID  = "openid"
	scopeProfile = "profile"
	scopeEmail   = "email"
	// scopeOfflineAccess is accepted like any scope a client registers; refresh tokens do not
	// depend on it (see newAuthorizationCodeGrant).
	scopeOfflineAccess = "offline_access"
)

func init() {
	registerMetadata(func(s *Server, m *Metadata) {
		m.UserinfoEndpoint = s.url(pathUserinfo)
		m.SubjectTypesSupported = []string{"public"}
		algs := make([]string, 0, len(jwsalg.Server))
		for _, a := range jwsalg.Server {
			algs = append(algs, string(a))
		}
		// Every algorithm a SigningKey may use: the one that signs is the key's.
		m.IDTokenSigningAlgValuesSupported = algs
		m.ScopesSupported = []string{scopeOpenID, scopeProfile, scopeEmail, scopeOfflineAccess}
		m.ClaimsSupported = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
			"email", "email_verified", "name", "preferred_username"}
		m.PromptValuesSupported = slices.Clone(promptValues)
	})
}

// userClaims are the claims about the user that ID tokens and userinfo share.
type userClaims struct {
	Subject           string `json:"sub"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// claimsFor returns the user's claims that scopes allow (OpenID Connect Core §5.4).
func claimsFor(u users.User, scopes []string) userClaims {
	c := userClaims{Subject: u.Username}
	if slices.Contains(scopes, scopeEmail) && u.Email != "" {
		verified := true
		c.Email, c.EmailVerified = u.Email, &verified
	}
	if slices.Contains(scopes, scopeProfile) {
		c.Name, c.PreferredUsername = u.Name, u.Username
	}
	return c
}

// idTokenClaims are the claims of an ID token (OpenID Connect Core §2, §3.1.3.6).
type idTokenClaims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Expiry   int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	ATHash   string `json:"at_hash"`
	// AuthorizedParty is the client_id: OpenID Connect Core §2 makes it optional with one
	// audience, but relying parties that check it need it.
	AuthorizedParty string `json:"azp"`
	userClaims
}

// idTokenParams describe an ID token to mint.
type idTokenParams struct {
	ClientID    string
	User        users.User
	Scopes      []string
	AuthTime    time.Time
	Nonce       string
	AccessToken *accesstoken.Token
}

// mintIDToken signs an ID token for the access token p.AccessToken, with the key that signed
// it, expiring with it.
func (s *Server) mintIDToken(signer *keyring.Signer, p idTokenParams) (string, error) {
	atHash, err := tokenHash(signer.Algorithm, p.AccessToken.Raw)
	if err != nil {
		return "", fmt.Errorf("mint id token: %w", err)
	}
	c := idTokenClaims{
		Issuer:          s.issuer,
		Audience:        p.ClientID,
		Expiry:          p.AccessToken.Claims.Expiry,
		IssuedAt:        p.AccessToken.Claims.IssuedAt,
		Nonce:           p.Nonce,
		ATHash:          atHash,
		AuthorizedParty: p.ClientID,
		userClaims:      claimsFor(p.User, p.Scopes),
	}
	if !p.AuthTime.IsZero() {
		c.AuthTime = p.AuthTime.Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("mint id token: %w", err)
	}
	raw, err := signer.SignIDToken(payload)
	if err != nil {
		return "", fmt.Errorf("mint id token: %w", err)
	}
	return raw, nil
}

// tokenHash is at_hash (OpenID Connect Core §3.1.3.6): the base64url left half of the hash of
// the token, with the hash of the JWS algorithm (SHA-512 for EdDSA over Ed25519, as the
// OpenID Foundation and go-oidc use).
func tokenHash(alg jose.SignatureAlgorithm, token string) (string, error) {
	var h hash.Hash
	switch alg {
	case jose.RS256, jose.PS256, jose.ES256:
		h = sha256.New()
	case jose.RS384, jose.PS384, jose.ES384:
		h = sha512.New384()
	case jose.RS512, jose.PS512, jose.ES512, jose.EdDSA:
		h = sha512.New()
	default:
		return "", fmt.Errorf("at_hash: no hash for algorithm %s", alg)
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]), nil
}

// bearerError is an RFC 6750 §3 error of the userinfo endpoint.
type bearerError struct {
	status int
	code   string // "" for a request without a token (RFC 6750 §3.1)
	desc   string
	cause  error
}

// handleUserinfo is the OpenID Connect userinfo endpoint (Core §5.3), GET or POST. The access
// token comes in the Authorization header (RFC 6750 §2.1) or, for POST, as a form-encoded
// access_token (§2.2), never both and never in the query (OAuth 2.1 §5.2). It must be an
// active access token of ours (signature, exp, and the store: a revoked token or family is
// refused), issued to a user (not client_credentials) with the scope openid. The answer holds
// the claims its scopes allow, read afresh from the users Secret; a user who left it gets
// invalid_token. Errors are RFC 6750 §3: 401 with WWW-Authenticate: Bearer for a missing or
// bad token, 403 insufficient_scope, 400 invalid_request.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	claims, berr := s.userinfoToken(w, r)
	if berr == nil {
		var u users.User
		var found bool
		var err error
		u, found, err = s.flow.users.Lookup(ctx, claims.Subject)
		switch {
		case err != nil:
			s.writeError(w, r, oautherr.Unavailable("the users directory is unavailable", err))
			return
		case !found:
			berr = &bearerError{status: http.StatusUnauthorized, code: "invalid_token", desc: "the user no longer exists"}
		default:
			if c, err := s.registry.Lookup(ctx, claims.ClientID); err == nil {
				s.corsForClient(w, r, &clients.Client{OAuthClient: c, ID: claims.ClientID})
			}
			info := infoFrom(ctx)
			info.clientID, info.outcome = claims.ClientID, "ok"
			httpx.WriteJSON(w, http.StatusOK, claimsFor(u, strings.Fields(claims.Scope)), true)
			return
		}
	}
	if berr.status >= http.StatusInternalServerError {
		s.writeError(w, r, berr.cause)
		return
	}
	info := infoFrom(ctx)
	info.outcome, info.cause = berr.code, berr.cause
	if info.outcome == "" {
		info.outcome = "no_token"
	}
	challenge := fmt.Sprintf("Bearer realm=%q", s.issuer)
	if berr.code != "" {
		challenge += fmt.Sprintf(", error=%q, error_description=%q", berr.code, berr.desc)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	if berr.code == "" {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(berr.status)
		return
	}
	httpx.WriteJSON(w, berr.status, oautherr.Body{Error: berr.code, ErrorDescription: berr.desc}, true)
}

// userinfoToken finds and checks the access token of a userinfo request.
func (s *Server) userinfoToken(w http.ResponseWriter, r *http.Request) (*accesstoken.Claims, *bearerError) {
	ctx := r.Context()
	invalid := func(desc string, cause error) *bearerError {
		return &bearerError{status: http.StatusUnauthorized, code: "invalid_token", desc: desc, cause: cause}
	}
	badRequest := func(desc string) *bearerError {
		return &bearerError{status: http.StatusBadRequest, code: oautherr.CodeInvalidRequest, desc: desc}
	}
	if r.URL.Query().Has("access_token") {
		return nil, badRequest("the access token must not be sent in the URL")
	}
	var token string
	authz := r.Header.Values("Authorization")
	switch len(authz) {
	case 0:
	case 1:
		scheme, t, ok := strings.Cut(authz[0], " ")
		// RFC 6750 §2.1: the scheme is case-insensitive (RFC 9110 §11.1).
		if !ok || !strings.EqualFold(scheme, "Bearer") || t == "" || strings.ContainsAny(t, " \t") {
			return nil, invalid("malformed Authorization header", nil)
		}
		token = t
	default:
		return nil, badRequest("Authorization header repeated")
	}
	if r.Method == http.MethodPost && r.ContentLength != 0 {
		form, err := httpx.ReadForm(w, r)
		if err != nil {
			return nil, badRequest("malformed request body")
		}
		if t := form.Get("access_token"); t != "" {
			if token != "" {
				return nil, badRequest("more than one access token")
			}
			token = t
		}
	}
	if token == "" {
		return nil, &bearerError{status: http.StatusUnauthorized}
	}
	jwks, err := s.keys.JWKS(ctx)
	if err != nil {
		return nil, &bearerError{status: http.StatusServiceUnavailable, cause: oautherr.Unavailable("the key set is unavailable, retry later", err)}
	}
	now := s.now()
	claims, err := accesstoken.Verify(token, jwks.Keys, s.issuer, now)
	if err != nil {
		return nil, invalid("the access token is invalid", err)
	}
	if claims.Expiry <= now.Unix() {
		return nil, invalid("the access token has expired", nil)
	}
	active, err := s.store.AccessTokenActive(ctx, claims.ID, claims.Family(), now)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrRevoked) {
		return nil, &bearerError{status: http.StatusServiceUnavailable, cause: fmt.Errorf("userinfo: %w", err)}
	}
	if err != nil || !active {
		return nil, invalid("the access token is not active", err)
	}
	if claims.Family() == "" || strings.HasPrefix(claims.Subject, accesstoken.ClientSubjectPrefix) {
		return nil, invalid("the access token was not issued to a user", nil)
	}
	if !slices.Contains(strings.Fields(claims.Scope), scopeOpenID) {
		return nil, &bearerError{status: http.StatusForbidden, code: "insufficient_scope", desc: "the access token lacks the openid scope"}
	}
	return claims, nil
}
