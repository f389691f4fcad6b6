// Package keyring gives the token server its signing key and the public keys it publishes,
// both read from the controller-runtime cache (a read-only client.Reader).
//
// The signing key is chosen with keymaterial.ActiveAt, the same rule the SigningKey controller
// uses for status.activeKeyID, over the keys of one SigningKey (Options.SigningKey) whose kid
// is published in that SigningKey's JWKS ConfigMap and not listed in spec.revokedKeyIDs. A key
// is therefore never used before every replica could have served it in /jwks (it is in the
// ConfigMap), and a revoked key stops signing the moment the SigningKey changes (decision D6).
//
// Decoded keys and their jose.Signers are cached by Secret UID and resourceVersion, so a key is
// parsed and a signer built once, not per request. The last good copy of each key is kept in
// memory: if a key Secret is deleted or corrupted, the server keeps signing with that copy while
// its kid stays published and unrevoked and its window holds (SECURITY-CASES 88: the server
// keeps serving while the controller repairs the Secret). With no usable key, Signer returns
// ErrNoSigningKey, which the server answers with 503 temporarily_unavailable.
package keyring

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
)

// ErrNoSigningKey: no key may sign now (no SigningKey, no published key, every key revoked or
// outside its window, or no key Secret ever decoded).
var ErrNoSigningKey = errors.New("keyring: no usable signing key")

// MaxJWKSMaxAge caps the Cache-Control max-age of /jwks. The effective value is the smaller of
// this and the smallest prePublish of the SigningKeys, so a verifier that honours it has always
// seen a Next key before the key signs (SECURITY-CASES 75).
const MaxJWKSMaxAge = 5 * time.Minute

// Options configure a Keyring.
type Options struct {
	// Reader is the read-only cache holding SigningKeys, key Secrets and JWKS ConfigMaps.
	Reader client.Reader
	// Namespace holds the SigningKeys.
	Namespace string
	// SigningKey names the SigningKey whose Active key signs.
	SigningKey string
	// Clock decides which key is Active.
	Clock clock.PassiveClock
	// Log receives key problems (never key material).
	Log logr.Logger
}

// Signer is the key that signs now.
type Signer struct {
	// KeyID is the kid, set in the JWS header by Signer.
	KeyID string
	// Algorithm is the JWS alg.
	Algorithm jose.SignatureAlgorithm
	// Signer signs with typ "at+jwt" (RFC 9068 §2.1) and the kid in the protected header. It is
	// built once per key and safe for concurrent use.
	Signer jose.Signer
	// IDToken signs OpenID Connect ID tokens with the same key and kid, but typ "JWT": an ID
	// token must never pass for an access token at a resource server that checks typ
	// (RFC 9068 §4, RFC 8725 §3.11).
	IDToken jose.Signer
}

// JWKS is the published key set of the namespace.
type JWKS struct {
	// Document is the JSON of the set: public keys only, one per kid.
	Document []byte
	// MaxAge is how long a verifier may cache Document.
	MaxAge time.Duration
	// Keys are the same keys by kid, for verifying tokens this server issued.
	Keys map[string]jose.JSONWebKey
}

// Keyring reads and caches keys. It is safe for concurrent use.
type Keyring struct {
	o Options

	mu sync.Mutex
	// decoded: key Secrets by namespace/name, valid while their UID and resourceVersion are
	// unchanged (objects of the --dev store have no UID, so the name is the key). A Secret that
	// failed to decode is remembered too (entry == nil) so it is not parsed again per request.
	decoded map[string]*decodedSecret
	// lastGood: the last key that decoded for each kid of the signing SigningKey.
	lastGood map[string]*signingEntry
	// published: parsed JWKS ConfigMaps by namespace/name, like decoded.
	published map[string]*parsedJWKS
	// jwks: the last assembled set and the versions it was built from.
	jwks        *JWKS
	jwksVersion string

	// signing and jwksMemo keep what Signer and JWKS read, at one revision of a Reader that
	// implements revision.Source.
	signing  revision.Memo[struct{}, *signingState]
	jwksMemo revision.Memo[struct{}, *JWKS]
}

type decodedSecret struct {
	uid             types.UID
	resourceVersion string
	entry           *signingEntry // nil when the Secret is invalid
}

type signingEntry struct {
	kid      string
	timeline keymaterial.Timeline
	signer   *Signer
}

type parsedJWKS struct {
	uid             types.UID
	resourceVersion string
	keys            []jose.JSONWebKey
	err             error
}

// New returns a Keyring.
func New(o Options) *Keyring {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Keyring{
		o:         o,
		decoded:   map[string]*decodedSecret{},
		lastGood:  map[string]*signingEntry{},
		published: map[string]*parsedJWKS{},
	}
}

// Signer returns the key that signs now, or an error wrapping ErrNoSigningKey when there is
// none. Other errors are cache read failures.
//
// When the Reader implements revision.Source, the keys read are kept until its revision
// changes; only the choice of the active key, which depends on the time, is made per call.
//
// In a traced request it is the span "keyring.Signer", with the kid it chose (package spans).
func (k *Keyring) Signer(ctx context.Context) (*Signer, error) {
	ctx, span := spans.Start(ctx, tracer, "keyring.Signer")
	st, cached, err := k.signingKeys(ctx)
	var signer *Signer
	if err == nil {
		signer, err = st.activeAt(k.o.Clock.Now())
	}
	if span.IsRecording() {
		if signer != nil {
			span.SetAttributes(spans.KeyIDKey.String(signer.KeyID), spans.AlgorithmKey.String(string(signer.Algorithm)))
		}
		endSpan(span, cached, err)
	}
	return signer, err
}

// signingKeys reads the keys that may sign, or takes them from the memo.
func (k *Keyring) signingKeys(ctx context.Context) (*signingState, spans.Cache, error) {
	src, memo := revision.Of(k.o.Reader)
	if !memo {
		st, err := k.readSigning(ctx)
		return st, spans.CacheNone, err
	}
	// The revision is read before the objects (revision.Source).
	rev := src.Revision()
	if st, ok := k.signing.Get(rev, struct{}{}); ok {
		return st, spans.CacheHit, nil
	}
	st, err := k.readSigning(ctx)
	if err != nil {
		return nil, spans.CacheMiss, err
	}
	k.signing.Put(rev, struct{}{}, st, 1)
	return st, spans.CacheMiss, nil
}

// tracer is the global provider's tracer for this package (package spans).
var tracer = spans.Tracer("github.com/latchkey-dev/latchkey/server/keyring")

// endSpan records whether the memo answered (latchkey.cache.hit, absent when the Reader keeps
// no memo) and the outcome of err, and ends span. No usable key is a failure: the server
// answers 503.
func endSpan(span trace.Span, cached spans.Cache, err error) {
	spans.SetCache(span, cached)
	switch {
	case err == nil:
		spans.End(span, spans.OutcomeOK, false)
	case errors.Is(err, ErrNoSigningKey):
		spans.End(span, "no_signing_key", true)
	default:
		spans.End(span, spans.OutcomeError, true)
	}
}

// signingState is what Signer reads from the objects: the keys that may sign, with their
// timelines, and the kids the SigningKey revoked.
type signingState struct {
	namespace, name string
	cands           []keymaterial.Candidate
	revoked         []string
	signers         map[string]*Signer
}

// activeAt picks the key that signs at now (keymaterial.ActiveAt, the controller's rule).
func (st *signingState) activeAt(now time.Time) (*Signer, error) {
	active, ok := keymaterial.ActiveAt(st.cands, st.revoked, now)
	if !ok {
		return nil, fmt.Errorf("%w: no published, unrevoked key of SigningKey %s/%s is active at %s",
			ErrNoSigningKey, st.namespace, st.name, now.UTC().Format(time.RFC3339))
	}
	return st.signers[active.KeyID], nil
}

// readSigning reads the SigningKey, its JWKS ConfigMap and its key Secrets, decoding only the
// Secrets that changed since the last call.
func (k *Keyring) readSigning(ctx context.Context) (*signingState, error) {
	var sk latchkeyv1.SigningKey
	if err := k.o.Reader.Get(ctx, client.ObjectKey{Namespace: k.o.Namespace, Name: k.o.SigningKey}, &sk); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: SigningKey %s/%s not found", ErrNoSigningKey, k.o.Namespace, k.o.SigningKey)
		}
		return nil, fmt.Errorf("get signing key: %w", err)
	}
	var cm corev1.ConfigMap
	if err := k.o.Reader.Get(ctx, client.ObjectKey{Namespace: k.o.Namespace, Name: sk.JWKSConfigMapName()}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: JWKS ConfigMap %s/%s not found", ErrNoSigningKey, k.o.Namespace, sk.JWKSConfigMapName())
		}
		return nil, fmt.Errorf("get jwks configmap: %w", err)
	}
	var secrets corev1.SecretList
	if err := k.o.Reader.List(ctx, &secrets, client.InNamespace(k.o.Namespace),
		client.MatchingLabels{latchkeyv1.LabelSigningKey: sk.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list key secrets: %w", err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()

	keys, err := k.parseJWKSLocked(&cm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSigningKey, err)
	}
	published := make(map[string]bool, len(keys))
	for _, key := range keys {
		published[key.KeyID] = true
	}

	seen := map[string]bool{}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		name := s.Namespace + "/" + s.Name
		seen[name] = true
		d, ok := k.decoded[name]
		if !ok || d.uid != s.UID || d.resourceVersion != s.ResourceVersion {
			d = &decodedSecret{uid: s.UID, resourceVersion: s.ResourceVersion, entry: k.decode(s)}
			k.decoded[name] = d
		}
		if d.entry != nil {
			k.lastGood[d.entry.kid] = d.entry
		}
	}
	for name := range k.decoded {
		if !seen[name] {
			delete(k.decoded, name)
		}
	}
	// Forget keys that left the JWKS: they can never sign again, and this bounds memory.
	st := &signingState{
		namespace: k.o.Namespace,
		name:      sk.Name,
		cands:     make([]keymaterial.Candidate, 0, len(k.lastGood)),
		revoked:   slices.Clone(sk.Spec.RevokedKeyIDs),
		signers:   make(map[string]*Signer, len(k.lastGood)),
	}
	for kid, e := range k.lastGood {
		if !published[kid] {
			delete(k.lastGood, kid)
			continue
		}
		st.cands = append(st.cands, keymaterial.Candidate{KeyID: kid, Timeline: e.timeline})
		st.signers[kid] = e.signer
	}
	return st, nil
}

// decode parses a key Secret and builds its signer, or logs why it cannot and returns nil.
func (k *Keyring) decode(s *corev1.Secret) *signingEntry {
	key, err := keymaterial.Decode(s)
	if err == nil {
		var tl keymaterial.Timeline
		tl, err = keymaterial.ParseTimeline(s)
		if err == nil {
			var signer *Signer
			signer, err = NewSigner(key)
			if err == nil {
				return &signingEntry{kid: key.KeyID, timeline: tl, signer: signer}
			}
		}
	}
	k.o.Log.Error(err, "Signing key Secret is unusable; keeping the last good copy of its key, if any",
		"secret", s.Namespace+"/"+s.Name)
	return nil
}

// NewSigner builds the jose.Signers of key: alg of the key and the kid in the protected header,
// typ "at+jwt" (RFC 9068 §2.1) for access tokens and "JWT" for ID tokens.
func NewSigner(key *keymaterial.Key) (*Signer, error) {
	alg := jose.SignatureAlgorithm(key.Algorithm)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key.SigningJWK()},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("build signer for key %s: %w", key.KeyID, err)
	}
	id, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key.SigningJWK()},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("build id token signer for key %s: %w", key.KeyID, err)
	}
	return &Signer{KeyID: key.KeyID, Algorithm: alg, Signer: s, IDToken: id}, nil
}

// parseJWKSLocked parses cm's jwks.json, cached by UID and resourceVersion.
func (k *Keyring) parseJWKSLocked(cm *corev1.ConfigMap) ([]jose.JSONWebKey, error) {
	name := cm.Namespace + "/" + cm.Name
	if p, ok := k.published[name]; ok && p.uid == cm.UID && p.resourceVersion == cm.ResourceVersion {
		return p.keys, p.err
	}
	p := &parsedJWKS{uid: cm.UID, resourceVersion: cm.ResourceVersion}
	doc, ok := cm.Data[latchkeyv1.JWKSDataKey]
	if !ok {
		p.err = fmt.Errorf("configmap %s/%s has no %s", cm.Namespace, cm.Name, latchkeyv1.JWKSDataKey)
	} else {
		keys, err := keymaterial.ParseJWKS([]byte(doc))
		if err != nil {
			p.err = fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err)
		}
		p.keys = usable(keys)
	}
	if p.err != nil {
		k.o.Log.Error(p.err, "JWKS ConfigMap is unusable", "configmap", cm.Namespace+"/"+cm.Name)
	}
	k.published[name] = p
	return p.keys, p.err
}

// usable keeps keys with a kid, an allowed algorithm that fits the key, and (for RSA) at least
// keymaterial.MinRSABits bits.
func usable(keys []jose.JSONWebKey) []jose.JSONWebKey {
	out := keys[:0:0]
	for _, key := range keys {
		if key.KeyID == "" {
			continue
		}
		if _, ok := Algorithm(key); !ok {
			continue
		}
		out = append(out, key)
	}
	return out
}

// JWKS returns the union of the published keys of every SigningKey in the namespace, with the
// max-age verifiers may cache it for: min(MaxJWKSMaxAge, the smallest prePublish). Revoked kids
// are left out even if a ConfigMap still lists them. The assembled document is cached until a
// SigningKey or ConfigMap changes.
//
// When the Reader implements revision.Source, the set is returned without any read until its
// revision changes.
//
// In a traced request it is the span "keyring.JWKS" (package spans).
func (k *Keyring) JWKS(ctx context.Context) (*JWKS, error) {
	ctx, span := spans.Start(ctx, tracer, "keyring.JWKS")
	j, cached, err := k.jwksMemoized(ctx)
	if span.IsRecording() {
		endSpan(span, cached, err)
	}
	return j, err
}

func (k *Keyring) jwksMemoized(ctx context.Context) (*JWKS, spans.Cache, error) {
	src, memo := revision.Of(k.o.Reader)
	if !memo {
		j, err := k.readJWKS(ctx)
		return j, spans.CacheNone, err
	}
	rev := src.Revision()
	if j, ok := k.jwksMemo.Get(rev, struct{}{}); ok {
		return j, spans.CacheHit, nil
	}
	j, err := k.readJWKS(ctx)
	if err != nil {
		return nil, spans.CacheMiss, err
	}
	k.jwksMemo.Put(rev, struct{}{}, j, 1)
	return j, spans.CacheMiss, nil
}

func (k *Keyring) readJWKS(ctx context.Context) (*JWKS, error) {
	var sks latchkeyv1.SigningKeyList
	if err := k.o.Reader.List(ctx, &sks, client.InNamespace(k.o.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	items := sks.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })

	type source struct {
		sk *latchkeyv1.SigningKey
		cm *corev1.ConfigMap
	}
	sources := make([]source, 0, len(items))
	var version strings.Builder
	maxAge := MaxJWKSMaxAge
	if len(items) == 0 {
		maxAge = 0
	}
	for i := range items {
		sk := &items[i]
		maxAge = min(maxAge, max(sk.PrePublish(), 0))
		var cm corev1.ConfigMap
		if err := k.o.Reader.Get(ctx, client.ObjectKey{Namespace: k.o.Namespace, Name: sk.JWKSConfigMapName()}, &cm); err != nil {
			if apierrors.IsNotFound(err) {
				fmt.Fprintf(&version, "%s/%s/%s/-;", sk.Name, sk.UID, sk.ResourceVersion)
				continue
			}
			return nil, fmt.Errorf("get jwks configmap: %w", err)
		}
		fmt.Fprintf(&version, "%s/%s/%s/%s/%s;", sk.Name, sk.UID, sk.ResourceVersion, cm.UID, cm.ResourceVersion)
		sources = append(sources, source{sk: sk, cm: &cm})
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.jwks != nil && k.jwksVersion == version.String() {
		return k.jwks, nil
	}
	var all []jose.JSONWebKey
	byKID := map[string]jose.JSONWebKey{}
	for _, src := range sources {
		keys, err := k.parseJWKSLocked(src.cm)
		if err != nil {
			continue // logged by parseJWKSLocked; the other SigningKeys still publish
		}
		for _, key := range keys {
			if slices.Contains(src.sk.Spec.RevokedKeyIDs, key.KeyID) {
				continue
			}
			if _, dup := byKID[key.KeyID]; dup {
				continue
			}
			byKID[key.KeyID] = key
			all = append(all, key)
		}
	}
	doc, err := keymaterial.MarshalJWKS(all)
	if err != nil {
		return nil, fmt.Errorf("assemble jwks: %w", err)
	}
	k.jwks = &JWKS{Document: doc, MaxAge: maxAge, Keys: byKID}
	k.jwksVersion = version.String()
	return k.jwks, nil
}

// Algorithm is the one JWS algorithm key verifies: its "alg" when set and allowed for its type;
// otherwise ES256 for a P-256 key and EdDSA for an Ed25519 key. RSA keys need an explicit alg
// (RS256 or PS256 cannot be told apart) and at least keymaterial.MinRSABits bits. The algorithm
// never comes from a token header (RFC 8725 §3.1).
func Algorithm(key jose.JSONWebKey) (jose.SignatureAlgorithm, bool) {
	return algorithmFor(key)
}

func algorithmFor(key jose.JSONWebKey) (jose.SignatureAlgorithm, bool) {
	return jwsalg.ForKey(key, jwsalg.Server)
}
