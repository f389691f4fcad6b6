package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// The SigningKey tests call Reconcile directly with an uncached client and a fake clock, so each
// step of the key timeline is taken deliberately: step the clock, reconcile, and assert the state
// of the world (Secrets, the JWKS ConfigMap, status) as the API server holds it. One test runs
// the controller under a manager to cover its watches.

// skFixture is one SigningKey in its own namespace with a reconciler driving it.
type skFixture struct {
	t     *testing.T
	ctx   context.Context
	key   types.NamespacedName
	clock *clocktesting.FakeClock
	rec   *testRecorder
	r     *SigningKeyReconciler
}

func newSKFixture(t *testing.T, spec latchkeyv1.SigningKeySpec) *skFixture {
	t.Helper()
	ns := newNamespace(t)
	sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}, Spec: spec}
	ctx := context.Background()
	if err := k8s.Create(ctx, sk); err != nil {
		t.Fatalf("create signingkey: %v", err)
	}
	clock := clocktesting.NewFakeClock(t0)
	rec := &testRecorder{}
	return &skFixture{t: t, ctx: ctx, key: client.ObjectKeyFromObject(sk), clock: clock, rec: rec,
		r: &SigningKeyReconciler{Client: k8s, Scheme: testScheme, Recorder: rec, Clock: clock}}
}

// at sets the fake clock to t0+d.
func (f *skFixture) at(d time.Duration) { f.clock.SetTime(t0.Add(d)) }

func (f *skFixture) reconcile() ctrl.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(f.ctx, ctrl.Request{NamespacedName: f.key})
	if err != nil {
		f.t.Fatalf("reconcile: %v", err)
	}
	return res
}

// converge reconciles until a reconcile writes nothing, and checks the invariants.
func (f *skFixture) converge() world {
	f.t.Helper()
	w := readWorld(f.t, f.key)
	for range 5 {
		f.reconcile()
		next := readWorld(f.t, f.key)
		if next.version == w.version {
			checkConverged(f.t, next, f.clock.Now())
			return next
		}
		w = next
	}
	f.t.Fatalf("reconcile does not converge: %s", w.version)
	return w
}

func (f *skFixture) update(mutate func(*latchkeyv1.SigningKey)) {
	f.t.Helper()
	var sk latchkeyv1.SigningKey
	if err := k8s.Get(f.ctx, f.key, &sk); err != nil {
		f.t.Fatal(err)
	}
	mutate(&sk)
	if err := k8s.Update(f.ctx, &sk); err != nil {
		f.t.Fatalf("update signingkey: %v", err)
	}
}

// worldKey is one key Secret as the API server holds it.
type worldKey struct {
	Secret        string
	KeyID         string
	Timeline      keymaterial.Timeline
	Pending       bool
	RotateRequest string
	Valid         bool
}

// world is the state a SigningKey's reconciles leave behind.
type world struct {
	sk      latchkeyv1.SigningKey
	keys    []worldKey // every labelled Secret, valid or not
	jwks    []string   // kids in the ConfigMap, sorted
	jwksRaw string
	cm      *corev1.ConfigMap
	version string // resourceVersions of everything: equal means nothing was written
}

func readWorld(t *testing.T, key types.NamespacedName) world {
	t.Helper()
	ctx := context.Background()
	var w world
	if err := k8s.Get(ctx, key, &w.sk); err != nil {
		t.Fatalf("get signingkey: %v", err)
	}
	var secrets corev1.SecretList
	if err := k8s.List(ctx, &secrets, client.InNamespace(key.Namespace), client.MatchingLabels{latchkeyv1.LabelSigningKey: key.Name}); err != nil {
		t.Fatal(err)
	}
	versions := []string{"sk=" + w.sk.ResourceVersion}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		versions = append(versions, s.Name+"="+s.ResourceVersion)
		wk := worldKey{Secret: s.Name, RotateRequest: s.Annotations[latchkeyv1.AnnotationRotateRequest]}
		k, err := keymaterial.Decode(s)
		tl, terr := keymaterial.ParseTimeline(s)
		if err == nil && terr == nil && controlledBy(s, &w.sk, "SigningKey") {
			wk.KeyID, wk.Timeline, wk.Valid, wk.Pending = k.KeyID, tl, true, tl.ActivatesAt.Equal(tl.RetiresAt)
		}
		w.keys = append(w.keys, wk)
	}
	var cm corev1.ConfigMap
	switch err := k8s.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name + latchkeyv1.JWKSConfigMapSuffix}, &cm); {
	case apierrors.IsNotFound(err):
	case err != nil:
		t.Fatal(err)
	default:
		w.cm = &cm
		versions = append(versions, "cm="+cm.ResourceVersion)
		w.jwksRaw = cm.Data[latchkeyv1.JWKSDataKey]
		keys, err := keymaterial.ParseJWKS([]byte(w.jwksRaw))
		if err != nil {
			t.Fatalf("jwks: %v", err)
		}
		for _, k := range keys {
			w.jwks = append(w.jwks, k.KeyID)
		}
		slices.Sort(w.jwks)
	}
	slices.Sort(versions)
	w.version = strings.Join(versions, ",")
	return w
}

func (w world) validKeys() []worldKey {
	var out []worldKey
	for _, k := range w.keys {
		if k.Valid {
			out = append(out, k)
		}
	}
	return out
}

func (w world) key(kid string) (worldKey, bool) {
	for _, k := range w.keys {
		if k.KeyID == kid {
			return k, true
		}
	}
	return worldKey{}, false
}

func (w world) published(kid string) bool { return slices.Contains(w.jwks, kid) }

// signer is the key the token server would sign with: keymaterial.ActiveAt over the valid,
// published, unrevoked key Secrets.
func (w world) signer(now time.Time) string {
	var cands []keymaterial.Candidate
	for _, k := range w.validKeys() {
		if w.published(k.KeyID) {
			cands = append(cands, keymaterial.Candidate{KeyID: k.KeyID, Timeline: k.Timeline})
		}
	}
	c, _ := keymaterial.ActiveAt(cands, w.sk.Spec.RevokedKeyIDs, now)
	return c.KeyID
}

func (w world) ready() *metav1.Condition {
	return meta.FindStatusCondition(w.sk.Status.Conditions, latchkeyv1.ConditionReady)
}

func (w world) statusKey(kid string) (latchkeyv1.KeyStatus, bool) {
	for _, k := range w.sk.Status.Keys {
		if k.KeyID == kid {
			return k, true
		}
	}
	return latchkeyv1.KeyStatus{}, false
}

// checkSafe asserts what must hold at every instant, even between two writes of a reconcile:
// no two Secrets hold one kid; a key that could sign is published; the JWKS carries only public
// signature keys with kid, alg and use; a revoked kid is never published.
func checkSafe(t *testing.T, w world, now time.Time) {
	t.Helper()
	checkSafeOpts(t, w, now, false)
}

// checkSafeOpts is checkSafe; revokedMayRemain relaxes one rule for the instant between a
// revocation and the controller's first write, when the old JWKS cannot have changed yet.
func checkSafeOpts(t *testing.T, w world, now time.Time, revokedMayRemain bool) {
	t.Helper()
	seen := map[string]string{}
	for _, k := range w.validKeys() {
		if other, dup := seen[k.KeyID]; dup {
			t.Errorf("kid %s is held by Secrets %s and %s", k.KeyID, other, k.Secret)
		}
		seen[k.KeyID] = k.Secret
	}
	var cands []keymaterial.Candidate
	for _, k := range w.validKeys() {
		cands = append(cands, keymaterial.Candidate{KeyID: k.KeyID, Timeline: k.Timeline})
	}
	if c, ok := keymaterial.ActiveAt(cands, w.sk.Spec.RevokedKeyIDs, now); ok && !w.published(c.KeyID) {
		t.Errorf("key %s is in its signing window but not published (jwks %v)", c.KeyID, w.jwks)
	}
	for _, kid := range w.sk.Spec.RevokedKeyIDs {
		if w.published(kid) && !revokedMayRemain {
			t.Errorf("revoked kid %s is published", kid)
		}
	}
	if w.cm != nil {
		var doc struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(w.jwksRaw), &doc); err != nil {
			t.Fatalf("jwks: %v", err)
		}
		for _, k := range doc.Keys {
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
				if _, ok := k[private]; ok {
					t.Errorf("jwks key %v carries private member %q", k["kid"], private)
				}
			}
			if k["kid"] == "" || k["alg"] == nil || k["use"] != "sig" {
				t.Errorf("jwks key %v lacks kid, alg or use=sig", k)
			}
		}
	}
}

// checkConverged asserts what holds once the controller has finished: checkSafe, plus every
// valid key is published and armed, status agrees with the Secrets, and at most one key is
// Active.
func checkConverged(t *testing.T, w world, now time.Time) {
	t.Helper()
	checkSafe(t, w, now)
	for _, k := range w.validKeys() {
		if k.Pending {
			t.Errorf("key %s (%s) is still pending", k.KeyID, k.Secret)
		}
		if !w.published(k.KeyID) {
			t.Errorf("key %s (%s) is not published", k.KeyID, k.Secret)
		}
		if _, ok := w.statusKey(k.KeyID); !ok {
			t.Errorf("key %s (%s) is not in status.keys", k.KeyID, k.Secret)
		}
	}
	if got, want := w.sk.Status.ActiveKeyID, w.signer(now); got != want {
		t.Errorf("status.activeKeyID = %q, want %q (ActiveAt over the key Secrets)", got, want)
	}
	active := 0
	for _, k := range w.sk.Status.Keys {
		if k.State == latchkeyv1.KeyStateActive {
			active++
		}
		if !w.published(k.KeyID) {
			t.Errorf("status key %s is not published", k.KeyID)
		}
	}
	if active > 1 {
		t.Errorf("%d keys are Active in status: %+v", active, w.sk.Status.Keys)
	}
	if len(w.jwks) != len(w.sk.Status.Keys) {
		t.Errorf("jwks %v and status.keys %d differ", w.jwks, len(w.sk.Status.Keys))
	}
}

func wantReady(t *testing.T, w world, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := w.ready()
	if c == nil || c.Status != status || c.Reason != reason {
		t.Fatalf("Ready = %+v, want %s/%s", c, status, reason)
	}
	if c.ObservedGeneration != w.sk.Generation {
		t.Errorf("Ready.observedGeneration = %d, want %d", c.ObservedGeneration, w.sk.Generation)
	}
}

// firstKey brings a default SigningKey to its first key at t0.
func firstKey(t *testing.T) (*skFixture, world) {
	f := newSKFixture(t, latchkeyv1.SigningKeySpec{})
	w := f.converge()
	if len(w.validKeys()) != 1 {
		t.Fatalf("want one key, got %+v", w.keys)
	}
	return f, w
}

func TestSigningKeyFirstKey(t *testing.T) {
	f := newSKFixture(t, latchkeyv1.SigningKeySpec{})
	res := f.reconcile()
	w := readWorld(t, f.key)
	checkConverged(t, w, f.clock.Now())

	keys := w.validKeys()
	if len(keys) != 1 || keys[0].Secret != "default-1" {
		t.Fatalf("keys = %+v, want one Secret default-1", w.keys)
	}
	k := keys[0]
	// The first key activates at once: no verifier can hold a token of a key that does not exist.
	if !k.Timeline.ActivatesAt.Equal(t0) || !k.Timeline.RetiresAt.Equal(t0.Add(720*h)) {
		t.Errorf("timeline = %+v, want [t0, t0+720h)", k.Timeline)
	}
	var s corev1.Secret
	if err := k8s.Get(f.ctx, types.NamespacedName{Namespace: f.key.Namespace, Name: k.Secret}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Labels[latchkeyv1.LabelSecretType] != latchkeyv1.SecretTypeSigningKey || s.Labels[latchkeyv1.LabelSigningKey] != "default" ||
		s.Labels[latchkeyv1.LabelManagedBy] != latchkeyv1.ManagedByValue || !controlledBy(&s, &w.sk, "SigningKey") {
		t.Errorf("key Secret labels %v / owner %v", s.Labels, s.OwnerReferences)
	}
	if w.cm == nil || w.cm.Labels[latchkeyv1.LabelJWKS] != "true" || w.cm.Labels[latchkeyv1.LabelSigningKey] != "default" ||
		!controlledBy(w.cm, &w.sk, "SigningKey") {
		t.Fatalf("jwks ConfigMap %+v", w.cm)
	}
	if !slices.Equal(w.jwks, []string{k.KeyID}) {
		t.Errorf("jwks = %v, want [%s]", w.jwks, k.KeyID)
	}
	if w.sk.Status.JWKSConfigMapName != "default-jwks" || w.sk.Status.ObservedGeneration != w.sk.Generation {
		t.Errorf("status = %+v", w.sk.Status)
	}
	if w.sk.Status.NextRotationTime == nil || !w.sk.Status.NextRotationTime.Equal(&metav1.Time{Time: t0.Add(720 * h)}) {
		t.Errorf("nextRotationTime = %v, want t0+720h", w.sk.Status.NextRotationTime)
	}
	wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeysReady)
	// The next transition is the start of the pre-publication window.
	if res.RequeueAfter != 719*h {
		t.Errorf("RequeueAfter = %v, want 719h", res.RequeueAfter)
	}
	if len(f.rec.find(corev1.EventTypeNormal, EventKeyGenerated)) != 1 || len(f.rec.find(corev1.EventTypeNormal, EventKeyActivated)) != 1 {
		t.Errorf("events = %+v", f.rec.events)
	}
	// Reconciling again at the same instant writes nothing.
	before := w.version
	f.reconcile()
	if after := readWorld(t, f.key).version; after != before {
		t.Errorf("second reconcile wrote: %s -> %s", before, after)
	}
}

func TestSigningKeyPrePublication(t *testing.T) {
	f, w := firstKey(t)
	first := w.validKeys()[0].KeyID

	f.at(718 * h)
	if w2 := f.converge(); len(w2.validKeys()) != 1 {
		t.Fatalf("a key was generated before the pre-publication window: %+v", w2.keys)
	}
	f.at(719 * h)
	res := f.reconcile()
	w = f.converge()
	if len(w.validKeys()) != 2 {
		t.Fatalf("want a Next key, got %+v", w.keys)
	}
	next := w.validKeys()[1]
	if next.Secret != "default-2" || !next.Timeline.ActivatesAt.Equal(t0.Add(720*h)) || !next.Timeline.RetiresAt.Equal(t0.Add(1440*h)) {
		t.Errorf("next key = %+v, want default-2 activating at t0+720h", next)
	}
	if !w.published(next.KeyID) || !w.published(first) {
		t.Errorf("jwks %v must hold both keys", w.jwks)
	}
	if w.sk.Status.ActiveKeyID != first {
		t.Errorf("activeKeyID = %s, want the first key until the hand-over", w.sk.Status.ActiveKeyID)
	}
	if st, _ := w.statusKey(next.KeyID); st.State != latchkeyv1.KeyStateNext {
		t.Errorf("next key state = %s", st.State)
	}
	if res.RequeueAfter != h {
		t.Errorf("RequeueAfter = %v, want 1h (the activation)", res.RequeueAfter)
	}
}

func TestSigningKeyPromotion(t *testing.T) {
	f, w := firstKey(t)
	first := w.validKeys()[0].KeyID
	f.at(719 * h)
	w = f.converge()
	next := w.validKeys()[1].KeyID

	f.at(720 * h)
	res := f.reconcile()
	w = f.converge()
	if w.sk.Status.ActiveKeyID != next {
		t.Fatalf("activeKeyID = %s, want the Next key %s at its activation", w.sk.Status.ActiveKeyID, next)
	}
	if st, _ := w.statusKey(next); st.State != latchkeyv1.KeyStateActive {
		t.Errorf("state of %s = %s, want Active", next, st.State)
	}
	if st, _ := w.statusKey(first); st.State != latchkeyv1.KeyStateRetired {
		t.Errorf("state of %s = %s, want Retired", first, st.State)
	}
	wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeysReady)
	if len(f.rec.find(corev1.EventTypeNormal, EventKeyActivated)) != 2 {
		t.Errorf("want two KeyActivated events, got %+v", f.rec.events)
	}
	if res.RequeueAfter != 24*h {
		t.Errorf("RequeueAfter = %v, want 24h (the first key's expiry)", res.RequeueAfter)
	}
}

func TestSigningKeyRetirement(t *testing.T) {
	f, w := firstKey(t)
	first := w.validKeys()[0].KeyID
	f.at(719 * h)
	f.converge()
	f.at(730 * h)
	w = f.converge()

	// A retired key no longer signs, but stays published, and keeps its Secret, for retention.
	st, _ := w.statusKey(first)
	if st.State != latchkeyv1.KeyStateRetired || st.ExpiresAt == nil || !st.ExpiresAt.Time.Equal(t0.Add(744*h)) {
		t.Errorf("retired key status = %+v, want Retired until t0+744h", st)
	}
	if !w.published(first) {
		t.Errorf("retired key %s left the JWKS early", first)
	}
	if _, ok := w.key(first); !ok {
		t.Errorf("retired key %s lost its Secret early", first)
	}
	if len(f.rec.find(corev1.EventTypeNormal, EventKeyRetired)) != 1 {
		t.Errorf("want one KeyRetired event, got %+v", f.rec.events)
	}
}

func TestSigningKeyExpiry(t *testing.T) {
	f, w := firstKey(t)
	first := w.validKeys()[0]
	f.at(719 * h)
	f.converge()
	f.at(744*h - time.Second)
	if w = f.converge(); !w.published(first.KeyID) {
		t.Fatalf("key %s left the JWKS a second before its expiry", first.KeyID)
	}
	f.at(744 * h)
	w = f.converge()
	if w.published(first.KeyID) {
		t.Errorf("expired key %s is still published", first.KeyID)
	}
	if _, ok := w.key(first.KeyID); ok {
		t.Errorf("expired key %s still has a Secret", first.KeyID)
	}
	if _, ok := w.statusKey(first.KeyID); ok {
		t.Errorf("expired key %s is still in status", first.KeyID)
	}
	if len(w.validKeys()) != 1 || len(f.rec.find(corev1.EventTypeNormal, EventKeyExpired)) != 1 {
		t.Errorf("keys %+v, events %+v", w.keys, f.rec.events)
	}
}

func TestSigningKeyRotateAnnotation(t *testing.T) {
	f, w := firstKey(t)
	first := w.validKeys()[0].KeyID
	setRotate := func(v string) {
		f.update(func(sk *latchkeyv1.SigningKey) {
			if sk.Annotations == nil {
				sk.Annotations = map[string]string{}
			}
			sk.Annotations[latchkeyv1.AnnotationRotate] = v
			sk.Annotations["test/touch"] = time.Now().String()
		})
	}

	f.at(10 * h)
	setRotate("r1")
	w = f.converge()
	if len(w.validKeys()) != 2 {
		t.Fatalf("rotate annotation made %d keys", len(w.validKeys()))
	}
	old, _ := w.key(first)
	next := w.validKeys()[1]
	// Rotate now, still with pre-publication: the new key activates prePublish from now and the
	// old one retires at that instant.
	if !next.Timeline.ActivatesAt.Equal(t0.Add(11*h)) || !old.Timeline.RetiresAt.Equal(t0.Add(11*h)) {
		t.Errorf("new key activates %v, old retires %v; want both t0+11h", next.Timeline.ActivatesAt, old.Timeline.RetiresAt)
	}
	if next.RotateRequest != "r1" || w.sk.Status.LastRotateRequest != "r1" {
		t.Errorf("rotate request recorded on Secret %q and status %q, want r1", next.RotateRequest, w.sk.Status.LastRotateRequest)
	}
	f.at(11 * h)
	if w = f.converge(); w.sk.Status.ActiveKeyID != next.KeyID {
		t.Fatalf("activeKeyID = %s, want %s", w.sk.Status.ActiveKeyID, next.KeyID)
	}

	// The same value again (the object changes, the annotation does not) never rotates twice.
	f.at(20 * h)
	setRotate("r1")
	if w = f.converge(); len(w.validKeys()) != 2 {
		t.Fatalf("the same rotate value rotated again: %+v", w.keys)
	}
	// A new value rotates again.
	setRotate("r2")
	if w = f.converge(); len(w.validKeys()) != 3 || w.sk.Status.LastRotateRequest != "r2" {
		t.Fatalf("a new rotate value did not rotate: %+v", w.keys)
	}
}

func TestSigningKeyRevokedActiveKey(t *testing.T) {
	t.Run("without a Next key a fresh key activates at once", func(t *testing.T) {
		f, w := firstKey(t)
		revoked := w.validKeys()[0].KeyID
		f.at(10 * h)
		f.update(func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{revoked} })
		f.reconcile()
		w = readWorld(t, f.key)
		checkConverged(t, w, f.clock.Now())
		if w.published(revoked) {
			t.Errorf("revoked kid %s is still published", revoked)
		}
		if _, ok := w.key(revoked); ok {
			t.Errorf("revoked kid %s still has a Secret", revoked)
		}
		if w.sk.Status.ActiveKeyID == "" || w.sk.Status.ActiveKeyID == revoked {
			t.Fatalf("activeKeyID = %q, want a fresh key", w.sk.Status.ActiveKeyID)
		}
		k, _ := w.key(w.sk.Status.ActiveKeyID)
		if !k.Timeline.ActivatesAt.Equal(t0.Add(10 * h)) {
			t.Errorf("replacement activates at %v, want now", k.Timeline.ActivatesAt)
		}
		wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeyRevoked)
		if len(f.rec.find(corev1.EventTypeWarning, latchkeyv1.ReasonKeyRevoked)) != 1 {
			t.Errorf("want a KeyRevoked Warning event, got %+v", f.rec.events)
		}
		// Never reactivated, whatever happens later.
		for _, d := range []time.Duration{11 * h, 729 * h, 730 * h, 800 * h} {
			f.at(d)
			if w = f.converge(); w.published(revoked) || w.sk.Status.ActiveKeyID == revoked {
				t.Fatalf("revoked kid %s came back at t0+%v", revoked, d)
			}
		}
	})
	t.Run("the Next key is promoted to activate now", func(t *testing.T) {
		f, w := firstKey(t)
		revoked := w.validKeys()[0].KeyID
		f.at(719 * h)
		w = f.converge()
		next := w.validKeys()[1].KeyID
		f.at(719*h + 10*time.Minute)
		f.update(func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{revoked} })
		w = f.converge()
		if w.sk.Status.ActiveKeyID != next {
			t.Fatalf("activeKeyID = %q, want the promoted Next key %s", w.sk.Status.ActiveKeyID, next)
		}
		k, _ := w.key(next)
		if !k.Timeline.ActivatesAt.Equal(f.clock.Now()) {
			t.Errorf("promoted key activates at %v, want now", k.Timeline.ActivatesAt)
		}
		if w.published(revoked) || len(w.validKeys()) != 1 {
			t.Errorf("revoked key still around: jwks %v keys %+v", w.jwks, w.keys)
		}
		if len(f.rec.find(corev1.EventTypeWarning, EventKeyPromoted)) != 1 {
			t.Errorf("want a KeyPromoted event, got %+v", f.rec.events)
		}
	})
}

func TestSigningKeyRevokedInactiveKey(t *testing.T) {
	t.Run("a revoked Next key leaves and is replaced by another pre-published key", func(t *testing.T) {
		f, w := firstKey(t)
		active := w.validKeys()[0].KeyID
		f.at(719 * h)
		w = f.converge()
		revoked := w.validKeys()[1].KeyID
		f.update(func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{revoked} })
		w = f.converge()
		if w.published(revoked) || w.sk.Status.ActiveKeyID != active || len(w.validKeys()) != 2 {
			t.Fatalf("jwks %v active %s keys %+v", w.jwks, w.sk.Status.ActiveKeyID, w.keys)
		}
		if k := w.validKeys()[1]; k.KeyID == revoked || !k.Timeline.ActivatesAt.Equal(t0.Add(720*h)) {
			t.Errorf("replacement Next key = %+v", k)
		}
	})
	t.Run("a revoked Retired key leaves the JWKS before its expiry", func(t *testing.T) {
		f, w := firstKey(t)
		revoked := w.validKeys()[0].KeyID
		f.at(719 * h)
		f.converge()
		f.at(725 * h)
		f.converge()
		f.update(func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{revoked} })
		w = f.converge()
		if w.published(revoked) {
			t.Errorf("revoked Retired kid %s is still published", revoked)
		}
		if _, ok := w.key(revoked); ok {
			t.Errorf("revoked Retired kid %s still has a Secret", revoked)
		}
		wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeysReady)
	})
}

func TestSigningKeyDeletedSecret(t *testing.T) {
	f, w := firstKey(t)
	lost := w.validKeys()[0]
	f.at(10 * h)
	if err := k8s.Delete(f.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.key.Namespace, Name: lost.Secret}}); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	w = readWorld(t, f.key)
	checkSafe(t, w, f.clock.Now())
	// The lost key stays published (tokens it signed are live, and the token server keeps
	// signing with its in-memory copy), and its replacement is pre-published.
	if !w.published(lost.KeyID) {
		t.Fatalf("lost key %s was dropped from the JWKS", lost.KeyID)
	}
	wantReady(t, w, metav1.ConditionFalse, latchkeyv1.ReasonKeySecretMissing)
	if len(f.rec.find(corev1.EventTypeWarning, latchkeyv1.ReasonKeySecretMissing)) != 1 {
		t.Errorf("want one KeySecretMissing Warning, got %+v", f.rec.events)
	}
	keys := w.validKeys()
	if len(keys) != 1 || !keys[0].Timeline.ActivatesAt.Equal(t0.Add(11*h)) || !w.published(keys[0].KeyID) {
		t.Fatalf("replacement = %+v, want one key activating at t0+11h, published", keys)
	}
	if st, ok := w.statusKey(lost.KeyID); !ok || st.SecretName != "" || st.RetiresAt == nil || !st.RetiresAt.Time.Equal(t0.Add(11*h)) {
		t.Errorf("status of the lost key = %+v, want remembered without a Secret, retiring at t0+11h", st)
	}
	f.converge()

	f.at(11 * h)
	w = f.converge()
	replacement := keys[0].KeyID
	if w.sk.Status.ActiveKeyID != replacement || !w.published(lost.KeyID) {
		t.Fatalf("active %s, jwks %v", w.sk.Status.ActiveKeyID, w.jwks)
	}
	wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeySecretMissing)

	// The lost key leaves when it expires (retention after its replacement took over).
	f.at(35*h - time.Second)
	if w = f.converge(); !w.published(lost.KeyID) {
		t.Fatalf("lost key left before its expiry")
	}
	f.at(35 * h)
	w = f.converge()
	if w.published(lost.KeyID) {
		t.Errorf("lost key %s still published after its expiry", lost.KeyID)
	}
	wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeysReady)
}

func TestSigningKeyCorruptSecret(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(*corev1.Secret)
		owned   bool // the corrupt Secret stays controlled by the SigningKey
	}{
		{"bad PEM", func(s *corev1.Secret) {
			s.Data[latchkeyv1.KeyDataPrivateKey] = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, true},
		{"kid mismatch", func(s *corev1.Secret) { s.Data[latchkeyv1.KeyDataKeyID] = []byte("not-the-thumbprint") }, true},
		{"wrong owner", func(s *corev1.Secret) { s.OwnerReferences[0].UID = "someone-else" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, w := firstKey(t)
			bad := w.validKeys()[0]
			var s corev1.Secret
			if err := k8s.Get(f.ctx, types.NamespacedName{Namespace: f.key.Namespace, Name: bad.Secret}, &s); err != nil {
				t.Fatal(err)
			}
			tc.corrupt(&s)
			if err := k8s.Update(f.ctx, &s); err != nil {
				t.Fatal(err)
			}
			f.at(10 * h)
			w = f.converge()
			wantReady(t, w, metav1.ConditionFalse, latchkeyv1.ReasonKeySecretInvalid)
			if len(f.rec.find(corev1.EventTypeWarning, latchkeyv1.ReasonKeySecretInvalid)) != 1 {
				t.Errorf("want one KeySecretInvalid Warning, got %+v", f.rec.events)
			}
			if !w.published(bad.KeyID) {
				t.Fatalf("key %s of the corrupt Secret left the JWKS", bad.KeyID)
			}
			keys := w.validKeys()
			if len(keys) != 1 || keys[0].KeyID == bad.KeyID || !keys[0].Timeline.ActivatesAt.Equal(t0.Add(11*h)) {
				t.Fatalf("replacement = %+v, want a new key pre-published until t0+11h", w.keys)
			}
			if _, ok := w.key(""); !ok {
				t.Errorf("the corrupt Secret was removed early: %+v", w.keys)
			}

			f.at(11 * h)
			if w = f.converge(); w.sk.Status.ActiveKeyID != keys[0].KeyID {
				t.Fatalf("activeKeyID = %s, want the replacement", w.sk.Status.ActiveKeyID)
			}
			wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeySecretInvalid)

			f.at(35 * h)
			w = f.converge()
			if w.published(bad.KeyID) {
				t.Errorf("key of the corrupt Secret still published after its expiry")
			}
			_, stillThere := w.key("")
			if tc.owned {
				// The controller's own corrupt Secret goes with its key.
				if stillThere {
					t.Errorf("owned corrupt Secret %s not deleted after its key expired", bad.Secret)
				}
				wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeysReady)
			} else {
				// Someone else's Secret is never touched; it stays reported.
				if !stillThere {
					t.Errorf("the controller deleted a Secret it does not own")
				}
				wantReady(t, w, metav1.ConditionTrue, latchkeyv1.ReasonKeySecretInvalid)
			}
		})
	}
}

// failingClient wraps the uncached client: the nth write (create, update, patch, delete, status
// patch) fails as if the controller died there, and after every successful write checkSafe runs,
// so an unsafe intermediate state is caught at the write that made it.
func failingClient(t *testing.T, key types.NamespacedName, clock *clocktesting.FakeClock, failAt int) (client.Client, *atomic.Int32) {
	var n atomic.Int32
	errKilled := errors.New("killed")
	write := func(do func() error) error {
		if int(n.Add(1)) == failAt {
			return errKilled
		}
		if err := do(); err != nil {
			return err
		}
		checkSafe(t, readWorld(t, key), clock.Now())
		return nil
	}
	c := interceptor.NewClient(k8s, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return write(func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return write(func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			return write(func() error { return c.Patch(ctx, obj, p, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return write(func() error { return c.Delete(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			return write(func() error { return c.SubResource(sub).Patch(ctx, obj, p, opts...) })
		},
	})
	return c, &n
}

func TestSigningKeyInterruptedReconcile(t *testing.T) {
	scenarios := []struct {
		name string
		// prepare brings the fixture to the instant before the reconcile that is interrupted.
		prepare func(f *skFixture)
		check   func(t *testing.T, w world, f *skFixture)
	}{
		{"first key", func(f *skFixture) {}, func(t *testing.T, w world, f *skFixture) {
			if len(w.validKeys()) != 1 || w.sk.Status.ActiveKeyID == "" {
				t.Errorf("keys %+v active %q", w.keys, w.sk.Status.ActiveKeyID)
			}
		}},
		{"scheduled rotation", func(f *skFixture) { f.converge(); f.at(719 * h) }, func(t *testing.T, w world, f *skFixture) {
			if len(w.validKeys()) != 2 || !w.validKeys()[1].Timeline.ActivatesAt.Equal(t0.Add(720*h)) {
				t.Errorf("keys %+v", w.keys)
			}
		}},
		{"rotate annotation", func(f *skFixture) {
			f.converge()
			f.at(10 * h)
			f.update(func(sk *latchkeyv1.SigningKey) {
				sk.Annotations = map[string]string{latchkeyv1.AnnotationRotate: "now"}
			})
		}, func(t *testing.T, w world, f *skFixture) {
			if len(w.validKeys()) != 2 || w.sk.Status.LastRotateRequest != "now" {
				t.Errorf("keys %+v lastRotateRequest %q", w.keys, w.sk.Status.LastRotateRequest)
			}
			if k := w.validKeys()[0]; !k.Timeline.RetiresAt.Equal(t0.Add(11 * h)) {
				t.Errorf("old key retires at %v, want t0+11h", k.Timeline.RetiresAt)
			}
		}},
		{"revoked active key", func(f *skFixture) {
			w := f.converge()
			f.at(10 * h)
			f.update(func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{w.validKeys()[0].KeyID} })
		}, func(t *testing.T, w world, f *skFixture) {
			if len(w.validKeys()) != 1 || w.sk.Status.ActiveKeyID == "" || w.sk.Status.ActiveKeyID == w.sk.Spec.RevokedKeyIDs[0] {
				t.Errorf("keys %+v active %q", w.keys, w.sk.Status.ActiveKeyID)
			}
		}},
		{"expiry", func(f *skFixture) { f.converge(); f.at(719 * h); f.converge(); f.at(744 * h) }, func(t *testing.T, w world, f *skFixture) {
			if len(w.validKeys()) != 1 || len(w.jwks) != 1 {
				t.Errorf("keys %+v jwks %v", w.keys, w.jwks)
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// Count the writes of an uninterrupted run, then kill the reconcile at each of them.
			ref := newSKFixture(t, latchkeyv1.SigningKeySpec{})
			sc.prepare(ref)
			c, writes := failingClient(t, ref.key, ref.clock, 0)
			ref.r.Client = c
			ref.reconcile()
			total := int(writes.Load())
			if total < 2 {
				t.Fatalf("only %d writes: nothing to interrupt", total)
			}
			for failAt := 1; failAt <= total; failAt++ {
				t.Run(fmt.Sprintf("killed at write %d of %d", failAt, total), func(t *testing.T) {
					f := newSKFixture(t, latchkeyv1.SigningKeySpec{})
					sc.prepare(f)
					c, _ := failingClient(t, f.key, f.clock, failAt)
					f.r.Client = c
					if _, err := f.r.Reconcile(f.ctx, ctrl.Request{NamespacedName: f.key}); err == nil {
						t.Fatalf("reconcile succeeded though write %d failed", failAt)
					}
					checkSafeOpts(t, readWorld(t, f.key), f.clock.Now(), failAt == 1)
					// A restarted controller (a fresh reconciler, a healthy client) converges.
					f.r = &SigningKeyReconciler{Client: k8s, Scheme: testScheme, Recorder: f.rec, Clock: f.clock}
					w := f.converge()
					sc.check(t, w, f)
				})
			}
		})
	}
}

func TestSigningKeyRacingReconcilers(t *testing.T) {
	f := newSKFixture(t, latchkeyv1.SigningKeySpec{})
	var lost atomic.Int32 // writes refused by optimistic concurrency
	count := func(err error) error {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			lost.Add(1)
		}
		return err
	}
	newRacer := func() *SigningKeyReconciler {
		// Separate clients: two controller instances that only share the API server.
		c, err := client.NewWithWatch(testCfg, client.Options{Scheme: testScheme})
		if err != nil {
			t.Fatal(err)
		}
		counted := interceptor.NewClient(c, interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				return count(c.Create(ctx, obj, opts...))
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				return count(c.Update(ctx, obj, opts...))
			},
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				return count(c.Delete(ctx, obj, opts...))
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				return count(c.SubResource(sub).Patch(ctx, obj, p, opts...))
			},
		})
		return &SigningKeyReconciler{Client: counted, Scheme: testScheme, Recorder: &testRecorder{}, Clock: f.clock}
	}
	racers := []*SigningKeyReconciler{newRacer(), newRacer()}
	race := func() {
		var wg sync.WaitGroup
		for _, r := range racers {
			wg.Go(func() {
				for range 3 {
					if _, err := r.Reconcile(f.ctx, ctrl.Request{NamespacedName: f.key}); err != nil {
						t.Errorf("reconcile: %v", err)
					}
				}
			})
		}
		wg.Wait()
		checkSafe(t, readWorld(t, f.key), f.clock.Now())
	}
	// Walk through every kind of transition, racing at each instant.
	steps := []struct {
		at     time.Duration
		mutate func(*latchkeyv1.SigningKey)
	}{
		{0, nil}, {h, nil}, {719 * h, nil}, {720 * h, nil}, {744 * h, nil},
		{750 * h, func(sk *latchkeyv1.SigningKey) { sk.Annotations = map[string]string{latchkeyv1.AnnotationRotate: "a"} }},
		{751 * h, nil}, {775 * h, nil},
		{780 * h, func(sk *latchkeyv1.SigningKey) { sk.Spec.RevokedKeyIDs = []string{sk.Status.ActiveKeyID} }},
		{781 * h, func(sk *latchkeyv1.SigningKey) { sk.Annotations = map[string]string{latchkeyv1.AnnotationRotate: "b"} }},
		{782 * h, nil}, {2000 * h, nil},
	}
	for _, st := range steps {
		f.at(st.at)
		if st.mutate != nil {
			f.update(st.mutate)
		}
		for range 4 {
			race()
		}
		w := f.converge()
		active := 0
		for _, k := range w.sk.Status.Keys {
			if k.State == latchkeyv1.KeyStateActive {
				active++
			}
		}
		if active != 1 || w.sk.Status.ActiveKeyID == "" {
			t.Fatalf("at t0+%v: %d Active keys (activeKeyID %q): %+v", st.at, active, w.sk.Status.ActiveKeyID, w.sk.Status.Keys)
		}
		successors := 0
		for _, k := range w.validKeys() {
			if k.Timeline.ActivatesAt.After(f.clock.Now()) {
				successors++
			}
		}
		if successors > 1 {
			t.Fatalf("at t0+%v: %d Next keys: %+v", st.at, successors, w.keys)
		}
	}
	t.Logf("%d writes lost an optimistic-concurrency race", lost.Load())
}

func TestSigningKeyUnderManager(t *testing.T) {
	ns := newNamespace(t)
	clock := clocktesting.NewFakeClock(t0)
	rec := &testRecorder{}
	startManager(t, []string{ns}, func(mgr ctrl.Manager) error {
		return (&SigningKeyReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: rec, Clock: clock}).SetupWithManager(mgr)
	})
	key := types.NamespacedName{Namespace: ns, Name: "default"}
	if err := k8s.Create(context.Background(), &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	var first string
	eventually(t, 30*time.Second, func() error {
		w := readWorld(t, key)
		if c := w.ready(); c == nil || c.Status != metav1.ConditionTrue || len(w.jwks) != 1 || w.sk.Status.ActiveKeyID != w.jwks[0] {
			return fmt.Errorf("not ready: %+v jwks %v", c, w.jwks)
		}
		first = w.jwks[0]
		return nil
	})
	// The controller watches what it owns: a deleted JWKS ConfigMap comes back with the key.
	if err := k8s.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-jwks"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if w := readWorld(t, key); !slices.Equal(w.jwks, []string{first}) {
			return fmt.Errorf("jwks = %v", w.jwks)
		}
		return nil
	})
	// And the rotate annotation is acted on.
	var sk latchkeyv1.SigningKey
	if err := k8s.Get(context.Background(), key, &sk); err != nil {
		t.Fatal(err)
	}
	sk.Annotations = map[string]string{latchkeyv1.AnnotationRotate: "1"}
	if err := k8s.Update(context.Background(), &sk); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		w := readWorld(t, key)
		if len(w.jwks) != 2 || w.sk.Status.LastRotateRequest != "1" || len(w.sk.Status.Keys) != 2 {
			return fmt.Errorf("jwks %v lastRotateRequest %q", w.jwks, w.sk.Status.LastRotateRequest)
		}
		return nil
	})
	checkConverged(t, readWorld(t, key), clock.Now())
}
