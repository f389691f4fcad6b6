package clients

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/utils/clock"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/store"
)

// Form parameters of client authentication (RFC 6749 §2.3.1, RFC 7523 §2.2, RFC 7521 §4.2).
const (
	ParamClientID            = "client_id"
	ParamClientSecret        = "client_secret"
	ParamClientAssertion     = "client_assertion"
	ParamClientAssertionType = "client_assertion_type"
)

// AssertionType is the only client_assertion_type accepted (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// failed is the description of every invalid_client: an unknown client, a client that is not
// Ready, a wrong secret, a wrong method and a bad assertion all look the same to the caller
// (OAuth 2.1 §3.2.4, SECURITY-CASES 43). The reason goes to the log only.
const failed = "client authentication failed"

// Client is a client that authenticated (or, for a public client, identified itself).
type Client struct {
	// OAuthClient is the registration, shared with the cache: read it, never modify it.
	*latchkeyv1.OAuthClient
	// ID is the effective client_id.
	ID string
	// Method is how it authenticated.
	Method latchkeyv1.TokenEndpointAuthMethod
}

// Authenticator authenticates clients.
type Authenticator struct {
	// Registry finds clients and their credentials.
	Registry *Registry
	// Assertions records private_key_jwt jtis so each assertion is used once (RFC 7523 §3).
	Assertions store.Assertions
	// Keys fetches private_key_jwt clients' JWKS.
	Keys *KeyFetcher
	// Issuer is the only accepted assertion audience (decision D4).
	Issuer string
	// Clock decides secret grace periods and assertion lifetimes.
	Clock clock.PassiveClock
}

// Policy says which clients an endpoint serves.
type Policy struct {
	// AllowPublic admits public clients, which only name their client_id (token endpoint,
	// revocation). Introspection refuses them: RFC 7662 §2.1 requires authentication.
	AllowPublic bool
}

// Authenticate authenticates the client of a request whose form has been read. Exactly one
// method may be used: Basic credentials, client_secret in the body, or a client assertion;
// several is invalid_request (OAuth 2.1 §2.4: "MUST NOT use more than one"). The method used
// must be the client's registered tokenEndpointAuthMethod. Errors are *oautherr.Error:
// invalid_client (with the same description whatever the reason), invalid_request, or
// temporarily_unavailable when the cache has not synced or the store is down.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, form httpx.Form, p Policy) (*Client, error) {
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return nil, oautherr.InvalidRequest("Authorization header repeated")
	}
	usesHeader := len(authz) == 1
	usesSecret := form.Has(ParamClientSecret)
	usesAssertion := form.Has(ParamClientAssertion) || form.Has(ParamClientAssertionType)
	n := 0
	for _, used := range []bool{usesHeader, usesSecret, usesAssertion} {
		if used {
			n++
		}
	}
	if n > 1 {
		return nil, oautherr.InvalidRequest("more than one client authentication method")
	}
	switch {
	case usesHeader:
		id, secret, err := ParseBasic(authz[0])
		if err != nil {
			return nil, invalidClient(fmt.Errorf("authorization header: %w", err))
		}
		if bodyID := form.Get(ParamClientID); bodyID != "" && bodyID != id {
			return nil, oautherr.InvalidRequest("client_id does not match the authenticated client")
		}
		return a.bySecret(ctx, id, secret, latchkeyv1.AuthMethodClientSecretBasic)
	case usesSecret:
		return a.bySecret(ctx, form.Get(ParamClientID), form.Get(ParamClientSecret), latchkeyv1.AuthMethodClientSecretPost)
	case usesAssertion:
		return a.byAssertion(ctx, form)
	default:
		return a.public(ctx, form.Get(ParamClientID), p)
	}
}

// invalidClient is the invalid_client error, with the reason as its logged cause.
func invalidClient(cause error) *oautherr.Error {
	return oautherr.InvalidClient(failed).WithCause(cause)
}

// lookup maps registry errors to OAuth errors.
func (a *Authenticator) lookup(ctx context.Context, id string) (*latchkeyv1.OAuthClient, error) {
	c, err := a.Registry.Lookup(ctx, id)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, ErrNotFound):
		return nil, invalidClient(fmt.Errorf("client %q: %w", id, err))
	case errors.Is(err, ErrNotSynced):
		return nil, oautherr.Unavailable("the client registry is not ready yet, retry later", err)
	default:
		return nil, oautherr.Unavailable("the client registry is unavailable, retry later", err)
	}
}

// dummyDigest is compared against when there is no stored secret, so an unknown client costs
// the same digest and comparisons as a known one.
var dummyDigest = sha256.Sum256([]byte("latchkey: no such client"))

func (a *Authenticator) bySecret(ctx context.Context, id, secret string, method latchkeyv1.TokenEndpointAuthMethod) (*Client, error) {
	presented := sha256.Sum256([]byte(secret))
	if id == "" {
		return nil, invalidClient(errors.New("no client_id"))
	}
	c, err := a.lookup(ctx, id)
	if err != nil {
		equalDigest(presented, dummyDigest)
		equalDigest(presented, dummyDigest)
		return nil, err
	}
	if c.Spec.Type != latchkeyv1.ClientTypeConfidential || c.EffectiveAuthMethod() != method {
		equalDigest(presented, dummyDigest)
		equalDigest(presented, dummyDigest)
		return nil, invalidClient(fmt.Errorf("client %q is registered for %s, not %s", id, c.EffectiveAuthMethod(), method))
	}
	creds, err := a.Registry.Credentials(ctx, c)
	if err != nil {
		equalDigest(presented, dummyDigest)
		equalDigest(presented, dummyDigest)
		if errors.Is(err, ErrNotFound) {
			return nil, invalidClient(fmt.Errorf("client %q: %w", id, err))
		}
		return nil, oautherr.Unavailable("the client registry is unavailable, retry later", err)
	}
	// Both comparisons always run, so the time taken does not say which secret matched. The
	// stored secrets' digests were computed when the Secret was read (newCredentials).
	okCurrent := equalDigest(presented, creds.currentDigest)
	prevValid := creds.Previous != nil && a.Clock.Now().Before(creds.PreviousExpiresAt)
	okPrevious := equalDigest(presented, creds.previousDigest) && prevValid
	if !okCurrent && !okPrevious {
		return nil, invalidClient(fmt.Errorf("client %q: wrong secret", id))
	}
	return &Client{OAuthClient: c, ID: id, Method: method}, nil
}

// equalDigest compares SHA-256 digests in constant time. Comparing digests rather than the
// secrets keeps the time independent of the secrets' lengths too.
func equalDigest(a, b [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func (a *Authenticator) public(ctx context.Context, id string, p Policy) (*Client, error) {
	if id == "" {
		return nil, invalidClient(errors.New("no client authentication and no client_id"))
	}
	c, err := a.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Spec.Type != latchkeyv1.ClientTypePublic || c.EffectiveAuthMethod() != latchkeyv1.AuthMethodNone {
		return nil, invalidClient(fmt.Errorf("confidential client %q sent no credentials", id))
	}
	if !p.AllowPublic {
		return nil, invalidClient(fmt.Errorf("public client %q cannot use this endpoint", id))
	}
	return &Client{OAuthClient: c, ID: id, Method: latchkeyv1.AuthMethodNone}, nil
}

// now is the authenticator's clock.
func (a *Authenticator) now() time.Time { return a.Clock.Now() }
