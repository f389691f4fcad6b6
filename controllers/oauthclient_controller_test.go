package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The OAuthClient tests run the controller under a manager whose cache is narrowed as main.go
// narrows it, so watches, the client-ID index and the label-filtered Secret cache are exercised,
// and assert the state of the world by polling.

const testIssuer = "https://id.example.com"

// ocFixture is an OAuthClient controller running over some namespaces.
type ocFixture struct {
	t     *testing.T
	ctx   context.Context
	clock *clocktesting.FakeClock
	rec   *testRecorder
	r     *OAuthClientReconciler
}

func newOCFixture(t *testing.T, namespaces ...string) *ocFixture {
	t.Helper()
	f := &ocFixture{t: t, ctx: context.Background(), clock: clocktesting.NewFakeClock(t0), rec: &testRecorder{}}
	startManager(t, namespaces, func(mgr ctrl.Manager) error {
		f.r = &OAuthClientReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
			Recorder: f.rec, Clock: f.clock, Issuer: testIssuer, SecretGracePeriod: time.Hour}
		return f.r.SetupWithManager(mgr)
	})
	return f
}

func confidentialClient(ns, name string) *latchkeyv1.OAuthClient {
	return &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypeConfidential,
			GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials}, Scopes: []string{"orders.read"}},
	}
}

func (f *ocFixture) create(obj client.Object) {
	f.t.Helper()
	if err := k8s.Create(f.ctx, obj); err != nil {
		f.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (f *ocFixture) get(key types.NamespacedName) *latchkeyv1.OAuthClient {
	f.t.Helper()
	var oc latchkeyv1.OAuthClient
	if err := k8s.Get(f.ctx, key, &oc); err != nil {
		f.t.Fatalf("get oauthclient: %v", err)
	}
	return &oc
}

// touch changes an annotation (and optionally more), which wakes the controller.
func (f *ocFixture) touch(key types.NamespacedName, mutate func(*latchkeyv1.OAuthClient)) {
	f.t.Helper()
	oc := f.get(key)
	if oc.Annotations == nil {
		oc.Annotations = map[string]string{}
	}
	oc.Annotations["test/touch"] = fmt.Sprint(time.Now().UnixNano())
	if mutate != nil {
		mutate(oc)
	}
	if err := k8s.Update(f.ctx, oc); err != nil {
		f.t.Fatalf("update oauthclient: %v", err)
	}
}

// waitConditions waits until Ready and SecretReady have the given status and reason.
func (f *ocFixture) waitConditions(key types.NamespacedName, ready metav1.ConditionStatus, reason string, secretReason string) *latchkeyv1.OAuthClient {
	f.t.Helper()
	var oc *latchkeyv1.OAuthClient
	eventually(f.t, 30*time.Second, func() error {
		oc = f.get(key)
		r := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionReady)
		s := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionSecretReady)
		if r == nil || s == nil || r.Status != ready || r.Reason != reason || s.Reason != secretReason ||
			r.ObservedGeneration != oc.Generation {
			return fmt.Errorf("Ready=%+v SecretReady=%+v, want %s/%s and SecretReady reason %s", r, s, ready, reason, secretReason)
		}
		return nil
	})
	return oc
}

func (f *ocFixture) secret(ns, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	if err := k8s.Get(f.ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func TestOAuthClientGeneratedSecret(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	oc := confidentialClient(ns, "svc")
	oc.Spec.ClientID = "shop-svc"
	f.create(oc)
	key := client.ObjectKeyFromObject(oc)
	got := f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	if got.Status.ClientID != "shop-svc" || got.Status.SecretName != "svc-oauth-client" {
		t.Errorf("status = %+v", got.Status)
	}
	s, err := f.secret(ns, "svc-oauth-client")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"client-id": "shop-svc", "issuer": testIssuer, "token-endpoint": testIssuer + "/token"}
	for k, v := range want {
		if string(s.Data[k]) != v {
			t.Errorf("data[%s] = %q, want %q", k, s.Data[k], v)
		}
	}
	if sec := s.Data["client-secret"]; len(sec) != 43 || strings.ContainsAny(string(sec), "+/=") {
		t.Errorf("client-secret is not 32 bytes of base64url without padding (len %d)", len(sec))
	}
	if s.Labels[latchkeyv1.LabelSecretType] != latchkeyv1.SecretTypeClientCredentials || s.Labels[latchkeyv1.LabelOAuthClient] != "svc" ||
		s.Labels[latchkeyv1.LabelManagedBy] != latchkeyv1.ManagedByValue || !controlledBy(s, got, "OAuthClient") {
		t.Errorf("labels %v owner %v", s.Labels, s.OwnerReferences)
	}
	if len(f.rec.find(corev1.EventTypeNormal, latchkeyv1.ReasonSecretGenerated)) != 1 {
		t.Errorf("events %+v", f.rec.events)
	}

	// A changed clientID is carried into the Secret; the secret itself stays.
	f.touch(key, func(oc *latchkeyv1.OAuthClient) { oc.Spec.ClientID = "shop-svc-2" })
	eventually(t, 30*time.Second, func() error {
		s2, err := f.secret(ns, "svc-oauth-client")
		if err != nil {
			return err
		}
		if string(s2.Data["client-id"]) != "shop-svc-2" || string(s2.Data["client-secret"]) != string(s.Data["client-secret"]) {
			return fmt.Errorf("client-id %q", s2.Data["client-id"])
		}
		return nil
	})
}

func TestOAuthClientPublicNeedsNoSecret(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	oc := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "spa", Namespace: ns},
		Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypePublic, TokenEndpointAuthMethod: latchkeyv1.AuthMethodNone,
			RedirectURIs: []string{"https://shop.example.com/cb"}}}
	f.create(oc)
	got := f.waitConditions(client.ObjectKeyFromObject(oc), metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonNotRequired)
	if got.Status.ClientID != "spa."+ns || got.Status.SecretName != "" {
		t.Errorf("status = %+v", got.Status)
	}
	if _, err := f.secret(ns, "spa-oauth-client"); !apierrors.IsNotFound(err) {
		t.Errorf("a public client got a Secret: %v", err)
	}
}

func TestOAuthClientSecretRotation(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	oc := confidentialClient(ns, "svc")
	f.create(oc)
	key := client.ObjectKeyFromObject(oc)
	f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	s0, _ := f.secret(ns, "svc-oauth-client")
	first := string(s0.Data["client-secret"])

	f.clock.SetTime(t0.Add(2 * time.Hour))
	f.touch(key, func(oc *latchkeyv1.OAuthClient) { oc.Annotations[latchkeyv1.AnnotationRotateSecret] = "r1" })
	got := f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretRotated)
	s1, _ := f.secret(ns, "svc-oauth-client")
	second := string(s1.Data["client-secret"])
	expires := t0.Add(3 * time.Hour).Format(time.RFC3339)
	// The previous secret stays accepted for the grace period, with its expiry.
	if second == first || string(s1.Data["previous-client-secret"]) != first || string(s1.Data["previous-client-secret-expires-at"]) != expires {
		t.Fatalf("after rotation: previous=%v expires=%q, new differs=%v", string(s1.Data["previous-client-secret"]) == first,
			s1.Data["previous-client-secret-expires-at"], second != first)
	}
	if s1.Annotations[latchkeyv1.AnnotationSecretRotateRequest] != "r1" || got.Status.LastSecretRotateRequest != "r1" ||
		got.Status.PreviousSecretExpiresAt == nil || got.Status.PreviousSecretExpiresAt.UTC().Format(time.RFC3339) != expires {
		t.Errorf("annotation %q status %+v", s1.Annotations[latchkeyv1.AnnotationSecretRotateRequest], got.Status)
	}
	if len(f.rec.find(corev1.EventTypeNormal, latchkeyv1.ReasonSecretRotated)) != 1 {
		t.Errorf("events %+v", f.rec.events)
	}

	// The same value again does nothing: once the controller's cache holds the touched object,
	// reconcile it again ourselves and check that nothing was written.
	f.touch(key, nil)
	touched := f.get(key).Annotations["test/touch"]
	eventually(t, 30*time.Second, func() error {
		var cached latchkeyv1.OAuthClient
		if err := f.r.Get(f.ctx, key, &cached); err != nil || cached.Annotations["test/touch"] != touched {
			return fmt.Errorf("cache has not seen the touch yet (%v)", err)
		}
		return nil
	})
	for range 2 {
		if _, err := f.r.Reconcile(f.ctx, ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := f.secret(ns, "svc-oauth-client"); string(s.Data["client-secret"]) != second || s.ResourceVersion != s1.ResourceVersion {
		t.Fatalf("the same rotate-secret value rotated again")
	}

	// At the expiry the previous secret is removed.
	f.clock.SetTime(t0.Add(3 * time.Hour))
	f.touch(key, nil)
	got = f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	s2, _ := f.secret(ns, "svc-oauth-client")
	if _, ok := s2.Data["previous-client-secret"]; ok || string(s2.Data["client-secret"]) != second {
		t.Errorf("previous secret not removed at its expiry, or the current one changed")
	}
	if _, ok := s2.Data["previous-client-secret-expires-at"]; ok || got.Status.PreviousSecretExpiresAt != nil {
		t.Errorf("expiry not removed: %+v", got.Status)
	}
}

func TestOAuthClientGeneratedSecretDeleted(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	oc := confidentialClient(ns, "svc")
	f.create(oc)
	key := client.ObjectKeyFromObject(oc)
	f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	old, _ := f.secret(ns, "svc-oauth-client")
	if err := k8s.Delete(f.ctx, old); err != nil {
		t.Fatal(err)
	}
	// Documented behaviour: recreated with a NEW secret and a Warning; the old one is never
	// resurrected.
	eventually(t, 30*time.Second, func() error {
		s, err := f.secret(ns, "svc-oauth-client")
		if err != nil {
			return err
		}
		if s.UID == old.UID {
			return fmt.Errorf("not deleted yet")
		}
		if string(s.Data["client-secret"]) == string(old.Data["client-secret"]) {
			t.Fatalf("the deleted secret was resurrected")
		}
		return nil
	})
	f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	eventually(t, 30*time.Second, func() error {
		if len(f.rec.find(corev1.EventTypeWarning, latchkeyv1.ReasonSecretGenerated)) != 1 {
			return fmt.Errorf("no Warning SecretGenerated event: %+v", f.rec.events)
		}
		return nil
	})
}

func TestOAuthClientGeneratedSecretNameTaken(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "svc-oauth-client", Namespace: ns}, Data: map[string][]byte{"x": []byte("y")}}
	f.create(foreign)
	oc := confidentialClient(ns, "svc")
	f.create(oc)
	f.waitConditions(client.ObjectKeyFromObject(oc), metav1.ConditionFalse, latchkeyv1.ReasonSecretNotOwned, latchkeyv1.ReasonSecretNotOwned)
	if s, _ := f.secret(ns, "svc-oauth-client"); s.ResourceVersion != foreign.ResourceVersion {
		t.Errorf("the controller wrote a Secret it does not own")
	}
}

func TestOAuthClientExternalSecret(t *testing.T) {
	ns := newNamespace(t)
	f := newOCFixture(t, ns)
	oc := confidentialClient(ns, "svc")
	oc.Spec.ClientID = "svc"
	oc.Spec.SecretSource = latchkeyv1.SecretSourceExternal
	oc.Spec.SecretName = "svc-creds"
	f.create(oc)
	key := client.ObjectKeyFromObject(oc)

	// Missing: never invented.
	f.waitConditions(key, metav1.ConditionFalse, latchkeyv1.ReasonSecretMissing, latchkeyv1.ReasonSecretMissing)
	if _, err := f.secret(ns, "svc-creds"); !apierrors.IsNotFound(err) {
		t.Fatalf("the controller created an External Secret: %v", err)
	}

	// Present but unlabelled: the token server could not see it; a distinct reason says so.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "svc-creds", Namespace: ns},
		Data: map[string][]byte{"client-id": []byte("svc"), "client-secret": []byte("from-vault")}}
	f.create(s)
	f.touch(key, nil)
	f.waitConditions(key, metav1.ConditionFalse, latchkeyv1.ReasonSecretNotLabelled, latchkeyv1.ReasonSecretNotLabelled)

	// Labelled: followed through the Secret watch, no nudge needed.
	s.Labels = map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeClientCredentials}
	if err := k8s.Update(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	f.waitConditions(key, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretFound)

	// A broken change is followed too.
	delete(s.Data, "client-secret")
	if err := k8s.Update(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	f.waitConditions(key, metav1.ConditionFalse, latchkeyv1.ReasonSecretInvalid, latchkeyv1.ReasonSecretInvalid)
	rv := s.ResourceVersion

	// And its deletion.
	if err := k8s.Delete(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	f.waitConditions(key, metav1.ConditionFalse, latchkeyv1.ReasonSecretMissing, latchkeyv1.ReasonSecretMissing)
	if rv != s.ResourceVersion {
		t.Errorf("the controller wrote the External Secret")
	}
}

func TestOAuthClientIDConflict(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	f := newOCFixture(t, nsA, nsB)
	owner := confidentialClient(nsA, "owner")
	owner.Spec.ClientID = "shared"
	f.create(owner)
	ownerKey := client.ObjectKeyFromObject(owner)
	f.waitConditions(ownerKey, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	ownerSecret, _ := f.secret(nsA, "owner-oauth-client")

	// creationTimestamp has a one-second resolution: make the squatter strictly younger.
	created := f.get(ownerKey).CreationTimestamp.Time
	eventually(t, 5*time.Second, func() error {
		if !time.Now().Truncate(time.Second).After(created) {
			return fmt.Errorf("same second")
		}
		return nil
	})
	squatter := confidentialClient(nsB, "squatter")
	squatter.Spec.ClientID = "shared"
	f.create(squatter)
	squatterKey := client.ObjectKeyFromObject(squatter)
	got := f.waitConditions(squatterKey, metav1.ConditionFalse, latchkeyv1.ReasonClientIDConflict, latchkeyv1.ReasonClientIDConflict)
	if c := meta.FindStatusCondition(got.Status.Conditions, latchkeyv1.ConditionReady); strings.Contains(c.Message, nsA) {
		t.Errorf("the loser learns the winner's namespace: %s", c.Message)
	}
	// The loser gets no credentials, and the winner is untouched.
	if _, err := f.secret(nsB, "squatter-oauth-client"); !apierrors.IsNotFound(err) {
		t.Errorf("the loser got a Secret: %v", err)
	}
	f.waitConditions(ownerKey, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	if s, _ := f.secret(nsA, "owner-oauth-client"); s.ResourceVersion != ownerSecret.ResourceVersion {
		t.Errorf("the winner's Secret changed")
	}

	// When the winner goes, the other claimant takes the client_id.
	if err := k8s.Delete(f.ctx, owner); err != nil {
		t.Fatal(err)
	}
	f.waitConditions(squatterKey, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	s, err := f.secret(nsB, "squatter-oauth-client")
	if err != nil || string(s.Data["client-id"]) != "shared" || string(s.Data["client-secret"]) == string(ownerSecret.Data["client-secret"]) {
		t.Errorf("the new owner's Secret: %v", err)
	}
}

func TestOAuthClientIDConflictTieBreak(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	f := newOCFixture(t, nsA, nsB)
	// Create pairs until two land in the same second (almost always the first pair).
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatal("could not create two OAuthClients in the same second")
		}
		id := fmt.Sprintf("tie-%d", i)
		a, b := confidentialClient(nsA, id), confidentialClient(nsB, id)
		a.Spec.ClientID, b.Spec.ClientID = id, id
		f.create(a)
		f.create(b)
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			continue
		}
		winner, loser := a, b
		if b.UID < a.UID {
			winner, loser = b, a
		}
		f.waitConditions(client.ObjectKeyFromObject(winner), metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
		f.waitConditions(client.ObjectKeyFromObject(loser), metav1.ConditionFalse, latchkeyv1.ReasonClientIDConflict, latchkeyv1.ReasonClientIDConflict)
		return
	}
}

// waitAudienceShared waits until the AudienceShared condition is as wanted: nil for absent.
func (f *ocFixture) waitAudienceShared(key types.NamespacedName, want func(*metav1.Condition) error) *metav1.Condition {
	f.t.Helper()
	var c *metav1.Condition
	eventually(f.t, 30*time.Second, func() error {
		oc := f.get(key)
		c = meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionAudienceShared)
		if oc.Status.ObservedGeneration != oc.Generation {
			return fmt.Errorf("generation %d not observed yet", oc.Generation)
		}
		return want(c)
	})
	return c
}

func audienceShared(ns string) func(*metav1.Condition) error {
	return func(c *metav1.Condition) error {
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != latchkeyv1.ReasonAudienceClaimedInNamespace ||
			!strings.Contains(c.Message, `"payments-api"`) || !strings.Contains(c.Message, "namespace "+ns) {
			return fmt.Errorf("AudienceShared = %+v, want True naming payments-api and namespace %s", c, ns)
		}
		return nil
	}
}

func noAudienceShared(c *metav1.Condition) error {
	if c != nil {
		return fmt.Errorf("AudienceShared = %+v, want none", c)
	}
	return nil
}

func TestOAuthClientAudienceShared(t *testing.T) {
	payNS, shopNS := newNamespace(t), newNamespace(t)
	f := newOCFixture(t, payNS, shopNS)
	pay := confidentialClient(payNS, "api")
	pay.Spec.Audiences = []string{"payments-api"}
	f.create(pay)
	payKey := client.ObjectKeyFromObject(pay)
	f.waitConditions(payKey, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)

	// creationTimestamp has a one-second resolution: make the shop client strictly younger.
	created := f.get(payKey).CreationTimestamp.Time
	eventually(t, 5*time.Second, func() error {
		if !time.Now().Truncate(time.Second).After(created) {
			return fmt.Errorf("same second")
		}
		return nil
	})
	shop := confidentialClient(shopNS, "checkout")
	shop.Spec.Audiences = []string{"shop-api", "payments-api"}
	f.create(shop)
	shopKey := client.ObjectKeyFromObject(shop)

	// The newer client is flagged, and still served: a flag, not a rejection.
	c := f.waitAudienceShared(shopKey, audienceShared(payNS))
	if strings.Contains(c.Message, "api.") || strings.Contains(c.Message, pay.Name+"-oauth-client") {
		t.Errorf("the message names more than the audience and namespace: %s", c.Message)
	}
	f.waitConditions(shopKey, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, latchkeyv1.ReasonSecretGenerated)
	// The older client is not flagged.
	f.waitAudienceShared(payKey, noAudienceShared)
	warnings := func() []recordedEvent {
		var out []recordedEvent
		for _, e := range f.rec.find(corev1.EventTypeWarning, latchkeyv1.ReasonAudienceClaimedInNamespace) {
			if e.Object == shopNS+"/checkout" {
				out = append(out, e)
			} else {
				t.Errorf("Warning event for %s", e.Object)
			}
		}
		return out
	}
	if w := warnings(); len(w) != 1 || !strings.Contains(w[0].Note, `"payments-api"`) {
		t.Errorf("Warning events = %+v, want one naming payments-api", w)
	}

	// The shop client drops the audience: the flag goes.
	f.touch(shopKey, func(oc *latchkeyv1.OAuthClient) { oc.Spec.Audiences = []string{"shop-api"} })
	f.waitAudienceShared(shopKey, noAudienceShared)

	// It names it again: flagged again. Then the payments client drops it: the watch requeues
	// the shop client through the audience the payments client used to name, and the flag goes.
	f.touch(shopKey, func(oc *latchkeyv1.OAuthClient) { oc.Spec.Audiences = []string{"payments-api"} })
	f.waitAudienceShared(shopKey, audienceShared(payNS))
	f.touch(payKey, func(oc *latchkeyv1.OAuthClient) { oc.Spec.Audiences = []string{"payments-internal"} })
	f.waitAudienceShared(shopKey, noAudienceShared)
	if w := warnings(); len(w) != 2 {
		t.Errorf("Warning events = %+v, want one per time the flag was raised", w)
	}
}

func TestOAuthClientInvalidSpecWithoutAPIServer(t *testing.T) {
	// The API server refuses such an object (see the CEL tests); --dev manifests do not go
	// through it, so the controller checks again and refuses to serve.
	oc := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "dev"},
		Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypePublic, TokenEndpointAuthMethod: latchkeyv1.AuthMethodClientSecretBasic,
			RedirectURIs: []string{"http://example.com/cb"}}}
	c, d := devModeClient(t, oc)
	_, err := d.oc.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(oc)})
	if err == nil || !strings.Contains(err.Error(), "public client cannot authenticate") {
		t.Fatalf("Reconcile() = %v, want a terminal InvalidSpec error", err)
	}
	var got latchkeyv1.OAuthClient
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(oc), &got); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, latchkeyv1.ConditionReady); c == nil || c.Reason != latchkeyv1.ReasonInvalidSpec {
		t.Errorf("Ready = %+v, want InvalidSpec", c)
	}
}
