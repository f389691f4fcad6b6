// Package servertest builds the objects and stores that token-server tests need: OAuthClients
// with their Secrets and Ready conditions, SigningKeys with key Secrets and JWKS ConfigMaps,
// a controller-runtime fake client with the client-ID index (the stand-in for the manager's
// cache), and a real Redis store.
//
// Typical use:
//
//	clk := clocktesting.NewFakeClock(servertest.Epoch)
//	keys := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, clk.Now())
//	svc, secret := servertest.ConfidentialClient("svc", "apps")
//	reader := servertest.NewReader(append(keys.Objects(), svc, secret)...)
//	st, redis := servertest.RedisStore(t)
//	srv, err := server.New(server.Options{Issuer: servertest.Issuer, Namespace: servertest.Namespace,
//		Reader: reader, Store: st, Clock: clk})
//
// Objects get a UID and a creationTimestamp (the fake client sets neither), so "oldest wins"
// and caches keyed by UID behave as in a cluster.
package servertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
)

// Defaults of the fixtures.
const (
	// Issuer is the issuer the tests configure.
	Issuer = "https://auth.example.test"
	// Namespace holds the SigningKeys.
	Namespace = "latchkey-system"
	// Audience is the audience of ConfidentialClient.
	Audience = "https://api.example.test"
)

// Epoch is a fixed start time for fake clocks.
var Epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Scheme has the Kubernetes core types and the Latchkey API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(latchkeyv1.AddToScheme(s))
	return s
}

// IndexClientID is the field index function of latchkeyv1.ClientIDIndex.
func IndexClientID(o client.Object) []string {
	return []string{o.(*latchkeyv1.OAuthClient).EffectiveClientID()}
}

// NewReader is a fake client holding objs, with the client-ID index and status subresources,
// standing in for the manager's cache. Tests update objects through it to simulate changes.
func NewReader(objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().
		WithScheme(Scheme()).
		WithObjects(objs...).
		WithStatusSubresource(&latchkeyv1.SigningKey{}, &latchkeyv1.OAuthClient{}).
		WithIndex(&latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, IndexClientID).
		Build()
}

var seq atomic.Int64

// meta gives an object a UID and a creationTimestamp that increases with every call, so
// objects made later are younger.
func objectMeta(name, namespace string) metav1.ObjectMeta {
	n := seq.Add(1)
	return metav1.ObjectMeta{
		Name:              name,
		Namespace:         namespace,
		UID:               types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", n)),
		CreationTimestamp: metav1.NewTime(Epoch.Add(-24 * time.Hour).Add(time.Duration(n) * time.Second)),
	}
}

// RandomSecret is a 256-bit client secret, base64url, as the controller generates.
func RandomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// SetReady sets c's Ready condition to status with reason.
func SetReady(c *latchkeyv1.OAuthClient, status metav1.ConditionStatus, reason string) {
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type:               latchkeyv1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            "set by servertest",
		ObservedGeneration: c.Generation,
		LastTransitionTime: metav1.NewTime(Epoch),
	})
}

// ClientOption changes a client fixture.
type ClientOption func(*latchkeyv1.OAuthClient)

// WithClientID sets spec.clientID.
func WithClientID(id string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.ClientID = id }
}

// WithScopes sets spec.scopes.
func WithScopes(scopes ...string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.Scopes = scopes }
}

// WithAudiences sets spec.audiences.
func WithAudiences(auds ...string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.Audiences = auds }
}

// WithGrants sets spec.grantTypes.
func WithGrants(gs ...latchkeyv1.GrantType) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.GrantTypes = gs }
}

// WithAuthMethod sets spec.tokenEndpointAuthMethod.
func WithAuthMethod(m latchkeyv1.TokenEndpointAuthMethod) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.TokenEndpointAuthMethod = m }
}

// WithCORSOrigins sets spec.corsOrigins.
func WithCORSOrigins(origins ...string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.CORSOrigins = origins }
}

// WithJWKSURI makes the client private_key_jwt with keys at uri.
func WithJWKSURI(uri string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) {
		c.Spec.TokenEndpointAuthMethod = latchkeyv1.AuthMethodPrivateKeyJWT
		c.Spec.JWKSURI = uri
	}
}

// WithRedirectURIs sets spec.redirectURIs.
func WithRedirectURIs(uris ...string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.RedirectURIs = uris }
}

// NotReady sets Ready=False with reason.
func NotReady(reason string) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { SetReady(c, metav1.ConditionFalse, reason) }
}

// WithAccessTokenLifetime sets spec.accessTokenLifetime.
func WithAccessTokenLifetime(d time.Duration) ClientOption {
	return func(c *latchkeyv1.OAuthClient) { c.Spec.AccessTokenLifetime = &metav1.Duration{Duration: d} }
}

// WithRateLimit sets spec.rateLimit: requests per window (0: no limit; window 0: the default).
// Benchmarks, which send more than the default 6000 requests a minute, pass 0.
func WithRateLimit(requests int32, window time.Duration) ClientOption {
	return func(c *latchkeyv1.OAuthClient) {
		c.Spec.RateLimit.Requests = &requests
		if window > 0 {
			c.Spec.RateLimit.Window = &metav1.Duration{Duration: window}
		}
	}
}

// ConfidentialClient is a Ready confidential client_secret_basic client allowed
// client_credentials, with scopes "read" and "write" and audience Audience, and its credentials
// Secret holding a random secret (Secret.StringData is not used: read the secret from
// Data[client-secret] or use SecretOf). Options apply before the status is computed.
func ConfidentialClient(name, namespace string, opts ...ClientOption) (*latchkeyv1.OAuthClient, *corev1.Secret) {
	c := &latchkeyv1.OAuthClient{
		ObjectMeta: objectMeta(name, namespace),
		Spec: latchkeyv1.OAuthClientSpec{
			Type:                    latchkeyv1.ClientTypeConfidential,
			TokenEndpointAuthMethod: latchkeyv1.AuthMethodClientSecretBasic,
			GrantTypes:              []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials},
			Scopes:                  []string{"read", "write"},
			Audiences:               []string{Audience},
		},
	}
	SetReady(c, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
	for _, o := range opts {
		o(c)
	}
	c.Status.ClientID = c.EffectiveClientID()
	c.Status.SecretName = c.EffectiveSecretName()
	return c, ClientSecret(c, RandomSecret())
}

// PublicClient is a Ready public client (auth method none) with the code grant.
func PublicClient(name, namespace string, opts ...ClientOption) *latchkeyv1.OAuthClient {
	c := &latchkeyv1.OAuthClient{
		ObjectMeta: objectMeta(name, namespace),
		Spec: latchkeyv1.OAuthClientSpec{
			Type:                    latchkeyv1.ClientTypePublic,
			TokenEndpointAuthMethod: latchkeyv1.AuthMethodNone,
			GrantTypes:              []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken},
			RedirectURIs:            []string{"http://127.0.0.1/callback"},
			Scopes:                  []string{"openid", "read"},
			Audiences:               []string{Audience},
		},
	}
	SetReady(c, metav1.ConditionTrue, latchkeyv1.ReasonAccepted)
	for _, o := range opts {
		o(c)
	}
	c.Status.ClientID = c.EffectiveClientID()
	return c
}

// ClientSecret is the labelled credentials Secret of c holding secret.
func ClientSecret(c *latchkeyv1.OAuthClient, secret string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: objectMeta(c.EffectiveSecretName(), c.Namespace),
		Data: map[string][]byte{
			latchkeyv1.ClientSecretDataClientID:      []byte(c.EffectiveClientID()),
			latchkeyv1.ClientSecretDataClientSecret:  []byte(secret),
			latchkeyv1.ClientSecretDataIssuer:        []byte(Issuer),
			latchkeyv1.ClientSecretDataTokenEndpoint: []byte(Issuer + "/token"),
		},
	}
	s.Labels = map[string]string{
		latchkeyv1.LabelSecretType:  latchkeyv1.SecretTypeClientCredentials,
		latchkeyv1.LabelOAuthClient: c.Name,
		latchkeyv1.LabelManagedBy:   latchkeyv1.ManagedByValue,
	}
	return s
}

// SecretOf returns the client-secret of a credentials Secret.
func SecretOf(s *corev1.Secret) string {
	return string(s.Data[latchkeyv1.ClientSecretDataClientSecret])
}

// KeySet is a SigningKey with its key Secrets and JWKS ConfigMap.
type KeySet struct {
	SigningKey *latchkeyv1.SigningKey
	Keys       []*keymaterial.Key
	Secrets    []*corev1.Secret
	ConfigMap  *corev1.ConfigMap
}

// NewSigningKey is a SigningKey (prePublish 1h) with one key of alg, Active from an hour
// before now for 720h, published in its ConfigMap.
func NewSigningKey(t testing.TB, namespace, name string, alg latchkeyv1.SigningAlgorithm, now time.Time) *KeySet {
	t.Helper()
	ks := &KeySet{
		SigningKey: &latchkeyv1.SigningKey{
			ObjectMeta: objectMeta(name, namespace),
			Spec: latchkeyv1.SigningKeySpec{
				Algorithm:  alg,
				PrePublish: &metav1.Duration{Duration: time.Hour},
			},
		},
		ConfigMap: &corev1.ConfigMap{ObjectMeta: objectMeta(name+latchkeyv1.JWKSConfigMapSuffix, namespace)},
	}
	ks.ConfigMap.Labels = map[string]string{
		latchkeyv1.LabelJWKS:       "true",
		latchkeyv1.LabelSigningKey: name,
		latchkeyv1.LabelManagedBy:  latchkeyv1.ManagedByValue,
	}
	ks.AddKey(t, now.Add(-time.Hour), now.Add(720*time.Hour))
	return ks
}

// AddKey generates a key of the set's algorithm with the window [activatesAt, retiresAt),
// adds its Secret and publishes it in the ConfigMap. It returns the key.
func (ks *KeySet) AddKey(t testing.TB, activatesAt, retiresAt time.Time) *keymaterial.Key {
	t.Helper()
	key, err := keymaterial.Generate(ks.SigningKey.EffectiveAlgorithm())
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	data, err := key.SecretData()
	if err != nil {
		t.Fatalf("key secret data: %v", err)
	}
	s := &corev1.Secret{
		ObjectMeta: objectMeta(fmt.Sprintf("%s-key-%d", ks.SigningKey.Name, seq.Load()+1), ks.SigningKey.Namespace),
		Data:       data,
	}
	s.Labels = map[string]string{
		latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey,
		latchkeyv1.LabelSigningKey: ks.SigningKey.Name,
		latchkeyv1.LabelManagedBy:  latchkeyv1.ManagedByValue,
	}
	s.Annotations = keymaterial.Timeline{CreatedAt: activatesAt.Add(-time.Hour), ActivatesAt: activatesAt, RetiresAt: retiresAt}.Annotations()
	ks.Keys = append(ks.Keys, key)
	ks.Secrets = append(ks.Secrets, s)
	ks.Publish(t)
	return key
}

// Publish rewrites the ConfigMap's jwks.json with the public keys of every key of the set.
func (ks *KeySet) Publish(t testing.TB, extra ...jose.JSONWebKey) {
	t.Helper()
	pubs := make([]jose.JSONWebKey, 0, len(ks.Keys)+len(extra))
	for _, k := range ks.Keys {
		pubs = append(pubs, k.PublicJWK())
	}
	pubs = append(pubs, extra...)
	doc, err := keymaterial.MarshalJWKS(pubs)
	if err != nil {
		t.Fatalf("marshal jwks: %v", err)
	}
	ks.ConfigMap.Data = map[string]string{latchkeyv1.JWKSDataKey: string(doc)}
}

// Objects are the SigningKey, its Secrets and its ConfigMap, for NewReader.
func (ks *KeySet) Objects() []client.Object {
	objs := []client.Object{ks.SigningKey, ks.ConfigMap}
	for _, s := range ks.Secrets {
		objs = append(objs, s)
	}
	return objs
}

// RedisStore starts a redis-server for the test and returns a store on it and the server,
// which the test may kill, flush or restart.
func RedisStore(t testing.TB) (*redisstore.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return redisstore.New(srv.Client(t)), srv
}

// Update writes obj (spec and status) over the stored object of the same name, whatever
// resourceVersion the fixture held, failing the test on error.
func Update(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	cur := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
		t.Fatalf("get %s: %v", obj.GetName(), err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	// Update leaves the status subresource alone and writes the stored status back into obj.
	want := obj.DeepCopyObject()
	if err := c.Update(ctx, obj); err != nil {
		t.Fatalf("update %s: %v", obj.GetName(), err)
	}
	if oc, ok := obj.(*latchkeyv1.OAuthClient); ok {
		oc.Status = want.(*latchkeyv1.OAuthClient).Status
		if err := c.Status().Update(ctx, oc); err != nil {
			t.Fatalf("update status of %s: %v", obj.GetName(), err)
		}
	}
}
