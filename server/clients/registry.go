// Package clients finds OAuthClients by client_id in the controller-runtime cache and
// authenticates them at the token, introspection and revocation endpoints (RFC 6749 §2.3,
// OAuth 2.1 §2.4): client_secret_basic, client_secret_post, private_key_jwt (RFC 7523) and
// none for public clients.
package clients

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
)

// Errors of the Registry.
var (
	// ErrNotFound: no Ready OAuthClient has this client_id (or its credentials Secret is
	// missing). The server answers invalid_client.
	ErrNotFound = errors.New("clients: no such client")
	// ErrNotSynced: the cache has not synced yet, so "not found" would be a guess. The server
	// answers 503 temporarily_unavailable, never invalid_client (SECURITY-CASES 85).
	ErrNotSynced = errors.New("clients: cache not synced")
)

// maxClientIDLength bounds a presented client_id before it is used as an index key. The
// default client_id "<name>.<namespace>" is at most 253+1+63 characters.
const maxClientIDLength = 320

// Registry finds clients in a read-only cache.
//
// When the Reader implements revision.Source (the --dev object store does), lookups and
// credentials are kept until the Reader's revision changes: the token path then reads no
// object at all. Otherwise every call reads the Reader.
type Registry struct {
	// Reader is the manager's cache or the --dev object store, with the
	// latchkeyv1.ClientIDIndex field index on OAuthClients.
	Reader client.Reader
	// Synced reports whether the cache has synced; nil means always.
	Synced func() bool

	lookups revision.Memo[string, lookupResult]
	creds   revision.Memo[client.ObjectKey, credsResult]
}

// maxMemo bounds each memo of a Registry: more distinct client ids than this (an attacker's
// made-up ones) are read every time rather than remembered.
const maxMemo = 4096

type lookupResult struct {
	c   *latchkeyv1.OAuthClient
	err error
}

type credsResult struct {
	creds *Credentials
	err   error
}

// Lookup returns the client with clientID: among the OAuthClients indexed under it, those whose
// Ready condition is True, and of these the oldest (creationTimestamp, then UID), as the
// controller decides clientID conflicts (DESIGN: the oldest resource wins; the others report
// ClientIDConflict and are not Ready anyway). The returned object is shared with the cache and
// must not be modified.
//
// In a traced request it is the span "clients.Lookup" (package spans).
func (r *Registry) Lookup(ctx context.Context, clientID string) (*latchkeyv1.OAuthClient, error) {
	ctx, span := spans.Start(ctx, tracer, "clients.Lookup")
	c, cached, err := r.lookupMemo(ctx, clientID)
	if span.IsRecording() {
		if clientID != "" && len(clientID) <= maxClientIDLength {
			span.SetAttributes(spans.ClientIDKey.String(clientID))
		}
		endSpan(span, cached, err)
	}
	return c, err
}

func (r *Registry) lookupMemo(ctx context.Context, clientID string) (*latchkeyv1.OAuthClient, spans.Cache, error) {
	if r.Synced != nil && !r.Synced() {
		return nil, spans.CacheNone, ErrNotSynced
	}
	if clientID == "" || len(clientID) > maxClientIDLength {
		return nil, spans.CacheNone, ErrNotFound
	}
	src, memo := revision.Of(r.Reader)
	if !memo {
		c, err := r.lookup(ctx, clientID)
		return c, spans.CacheNone, err
	}
	// The revision is read before the objects, so a change during the read makes the next
	// call read again (revision.Source).
	rev := src.Revision()
	if res, ok := r.lookups.Get(rev, clientID); ok {
		return res.c, spans.CacheHit, res.err
	}
	c, err := r.lookup(ctx, clientID)
	if err == nil || errors.Is(err, ErrNotFound) {
		r.lookups.Put(rev, clientID, lookupResult{c: c, err: err}, maxMemo)
	}
	return c, spans.CacheMiss, err
}

func (r *Registry) lookup(ctx context.Context, clientID string) (*latchkeyv1.OAuthClient, error) {
	var list latchkeyv1.OAuthClientList
	if err := r.Reader.List(ctx, &list, client.MatchingFields{latchkeyv1.ClientIDIndex: clientID}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list oauthclients by client id: %w", err)
	}
	var best *latchkeyv1.OAuthClient
	for i := range list.Items {
		c := &list.Items[i]
		// The index is the contract, but an object store without it would return everything.
		if c.EffectiveClientID() != clientID || !Ready(c) {
			continue
		}
		if best == nil || older(c, best) {
			best = c
		}
	}
	if best == nil {
		return nil, ErrNotFound
	}
	return best, nil
}

// Ready reports whether the controller accepted c: its Ready condition is True.
func Ready(c *latchkeyv1.OAuthClient) bool {
	return meta.IsStatusConditionTrue(c.Status.Conditions, latchkeyv1.ConditionReady)
}

func older(a, b *latchkeyv1.OAuthClient) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.UID < b.UID
}

// Credentials are the shared secrets a client may present.
type Credentials struct {
	// Current is client-secret.
	Current []byte
	// Previous is previous-client-secret, accepted until PreviousExpiresAt; nil when absent or
	// when its expiry is missing or unparsable (fail closed).
	Previous          []byte
	PreviousExpiresAt time.Time

	// The SHA-256 digests of Current and Previous (dummyDigest when there is no Previous),
	// computed once per Secret version rather than per request.
	currentDigest, previousDigest [sha256.Size]byte
}

// newCredentials computes the digests of the secrets.
func newCredentials(current, previous []byte, previousExpiresAt time.Time) *Credentials {
	c := &Credentials{Current: current, Previous: previous, PreviousExpiresAt: previousExpiresAt,
		currentDigest: sha256.Sum256(current), previousDigest: dummyDigest}
	if previous != nil {
		c.previousDigest = sha256.Sum256(previous)
	}
	return c
}

// Credentials reads the client's Secret (EffectiveSecretName in the client's namespace). A
// missing Secret, or one without client-secret, is ErrNotFound: the client cannot
// authenticate until its Secret is back (SECURITY-CASES 91, never a 500). Like Lookup, it
// keeps its answer while the Reader's revision holds.
//
// In a traced request it is the span "clients.Credentials", which records the client id and
// never a secret (package spans).
func (r *Registry) Credentials(ctx context.Context, c *latchkeyv1.OAuthClient) (*Credentials, error) {
	ctx, span := spans.Start(ctx, tracer, "clients.Credentials")
	creds, cached, err := r.credentialsMemo(ctx, c)
	if span.IsRecording() {
		span.SetAttributes(spans.ClientIDKey.String(c.EffectiveClientID()))
		endSpan(span, cached, err)
	}
	return creds, err
}

func (r *Registry) credentialsMemo(ctx context.Context, c *latchkeyv1.OAuthClient) (*Credentials, spans.Cache, error) {
	src, memo := revision.Of(r.Reader)
	if !memo {
		creds, err := r.credentials(ctx, c)
		return creds, spans.CacheNone, err
	}
	rev := src.Revision()
	key := client.ObjectKey{Namespace: c.Namespace, Name: c.EffectiveSecretName()}
	if res, ok := r.creds.Get(rev, key); ok {
		return res.creds, spans.CacheHit, res.err
	}
	creds, err := r.credentials(ctx, c)
	if err == nil || errors.Is(err, ErrNotFound) {
		r.creds.Put(rev, key, credsResult{creds: creds, err: err}, maxMemo)
	}
	return creds, spans.CacheMiss, err
}

// tracer is the global provider's tracer for this package (package spans).
var tracer = spans.Tracer("github.com/latchkey-dev/latchkey/server/clients")

// endSpan records whether a memo answered (latchkey.cache.hit, absent when the Reader keeps
// no memo) and the outcome of err, and ends span. Not synced is a failure (the server answers
// 503); an unknown client is an answer.
func endSpan(span trace.Span, cached spans.Cache, err error) {
	spans.SetCache(span, cached)
	switch {
	case err == nil:
		spans.End(span, spans.OutcomeOK, false)
	case errors.Is(err, ErrNotFound):
		spans.End(span, "not_found", false)
	case errors.Is(err, ErrNotSynced):
		spans.End(span, "not_synced", true)
	default:
		spans.End(span, spans.OutcomeError, true)
	}
}

func (r *Registry) credentials(ctx context.Context, c *latchkeyv1.OAuthClient) (*Credentials, error) {
	var s corev1.Secret
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.EffectiveSecretName()}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: secret %s/%s missing", ErrNotFound, c.Namespace, c.EffectiveSecretName())
		}
		return nil, fmt.Errorf("get client secret: %w", err)
	}
	cur := s.Data[latchkeyv1.ClientSecretDataClientSecret]
	if len(cur) == 0 {
		return nil, fmt.Errorf("%w: secret %s/%s has no %s", ErrNotFound, c.Namespace, s.Name, latchkeyv1.ClientSecretDataClientSecret)
	}
	var (
		prev    []byte
		prevExp time.Time
	)
	if p := s.Data[latchkeyv1.ClientSecretDataPreviousSecret]; len(p) > 0 {
		if t, err := time.Parse(time.RFC3339, string(s.Data[latchkeyv1.ClientSecretDataPreviousExpiresAt])); err == nil {
			prev, prevExp = p, t
		}
	}
	return newCredentials(cur, prev, prevExp), nil
}

// OriginRegistered reports whether any Ready client lists origin in spec.corsOrigins. It
// answers CORS preflights (which carry no client identity) and /jwks (which serves everyone).
// Origin "null" (an opaque origin) is never registered.
func (r *Registry) OriginRegistered(ctx context.Context, origin string) (bool, error) {
	if origin == "" || origin == "null" {
		return false, nil
	}
	if r.Synced != nil && !r.Synced() {
		return false, ErrNotSynced
	}
	var list latchkeyv1.OAuthClientList
	if err := r.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return false, fmt.Errorf("list oauthclients: %w", err)
	}
	for i := range list.Items {
		c := &list.Items[i]
		if Ready(c) && slices.Contains(c.Spec.CORSOrigins, origin) {
			return true, nil
		}
	}
	return false, nil
}
