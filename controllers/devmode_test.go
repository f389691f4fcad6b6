package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// --dev drives the reconcilers without a manager: Reconcile called in a loop over
// controller-runtime's fake client, with status subresources and the client-ID index, honouring
// RequeueAfter. These tests hold the reconcilers to that contract.

type devReconcilers struct {
	sk *SigningKeyReconciler
	oc *OAuthClientReconciler
}

// devModeClient builds the object store the way internal/devmode does.
func devModeClient(t *testing.T, objs ...client.Object) (client.Client, devReconcilers) {
	t.Helper()
	c := fake.NewClientBuilder().
		WithScheme(testScheme).
		WithObjects(objs...).
		WithStatusSubresource(&latchkeyv1.SigningKey{}, &latchkeyv1.OAuthClient{}).
		WithIndex(&latchkeyv1.OAuthClient{}, latchkeyv1.ClientIDIndex, IndexOAuthClientClientID).
		WithIndex(&latchkeyv1.OAuthClient{}, latchkeyv1.AudienceIndex, IndexOAuthClientAudience).
		Build()
	clock := clocktesting.NewFakeClock(t0)
	rec := &testRecorder{}
	d := devReconcilers{
		sk: &SigningKeyReconciler{Client: c, Scheme: testScheme, Recorder: rec, Clock: clock},
		oc: &OAuthClientReconciler{Client: c, APIReader: c, Scheme: testScheme, Recorder: rec, Clock: clock,
			Issuer: "http://localhost:8080", SecretGracePeriod: 90 * time.Minute},
	}
	return c, d
}

func TestReconcilersWithoutManager(t *testing.T) {
	ctx := context.Background()
	sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}
	svc := confidentialClient("default", "svc")
	ext := confidentialClient("default", "ext")
	ext.Spec.SecretSource, ext.Spec.SecretName = latchkeyv1.SecretSourceExternal, "ext-creds"
	extSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ext-creds", Namespace: "default",
		Labels: map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeClientCredentials}},
		Data: map[string][]byte{"client-id": []byte("ext.default"), "client-secret": []byte("dev-only")}}
	c, d := devModeClient(t, sk, svc, ext, extSecret)
	clock := d.sk.Clock.(*clocktesting.FakeClock)

	reconcile := func(r interface {
		Reconcile(context.Context, ctrl.Request) (ctrl.Result, error)
	}, obj client.Object) ctrl.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		if err != nil {
			t.Fatalf("reconcile %s: %v", obj.GetName(), err)
		}
		return res
	}

	// The SigningKey converges in one pass and asks to come back when pre-publication starts.
	if res := reconcile(d.sk, sk); res.RequeueAfter != 719*time.Hour {
		t.Errorf("RequeueAfter = %v, want 719h", res.RequeueAfter)
	}
	var got latchkeyv1.SigningKey
	if err := c.Get(ctx, client.ObjectKeyFromObject(sk), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.ActiveKeyID == "" || !meta.IsStatusConditionTrue(got.Status.Conditions, latchkeyv1.ConditionReady) {
		t.Fatalf("signingkey status = %+v", got.Status)
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default-jwks"}, &cm); err != nil {
		t.Fatal(err)
	}
	if keys, err := keymaterial.ParseJWKS([]byte(cm.Data[latchkeyv1.JWKSDataKey])); err != nil || len(keys) != 1 || keys[0].KeyID != got.Status.ActiveKeyID {
		t.Errorf("jwks = %v (%v)", cm.Data, err)
	}
	// Honouring RequeueAfter walks the timeline.
	clock.Step(719 * time.Hour)
	if res := reconcile(d.sk, sk); res.RequeueAfter != time.Hour {
		t.Errorf("RequeueAfter = %v, want 1h", res.RequeueAfter)
	}

	// A Generated client gets its Secret; an External one is read.
	reconcile(d.oc, svc)
	reconcile(d.oc, ext)
	for _, oc := range []*latchkeyv1.OAuthClient{svc, ext} {
		var cur latchkeyv1.OAuthClient
		if err := c.Get(ctx, client.ObjectKeyFromObject(oc), &cur); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(cur.Status.Conditions, latchkeyv1.ConditionReady) {
			t.Errorf("%s not Ready: %+v", oc.Name, cur.Status.Conditions)
		}
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "svc-oauth-client"}, &s); err != nil || len(s.Data["client-secret"]) == 0 {
		t.Fatalf("generated secret: %v", err)
	}

	// A rotation asks to come back when the previous secret expires.
	var cur latchkeyv1.OAuthClient
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Annotations = map[string]string{latchkeyv1.AnnotationRotateSecret: "1"}
	if err := c.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	if res := reconcile(d.oc, svc); res.RequeueAfter != 90*time.Minute {
		t.Errorf("RequeueAfter = %v, want the 90m grace period", res.RequeueAfter)
	}
	clock.Step(90 * time.Minute)
	if res := reconcile(d.oc, svc); res.RequeueAfter != 0 {
		t.Errorf("RequeueAfter = %v after the expiry, want none", res.RequeueAfter)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "svc-oauth-client"}, &s); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Data[latchkeyv1.ClientSecretDataPreviousSecret]; ok {
		t.Errorf("previous secret not removed at its expiry")
	}
}
