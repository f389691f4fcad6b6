package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
)

// The controllers' audit events: signing_key_rotated when a key becomes Active, client_secret_rotated
// when a generated secret is replaced on request; each counted, and neither carrying key
// material or a secret.
func TestAuditRecords(t *testing.T) {
	ctx := context.Background()
	sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}
	svc := confidentialClient("default", "svc")
	c, d := devModeClient(t, sk, svc)
	clock := d.sk.Clock.(*clocktesting.FakeClock)
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	l, err := audit.New(slog.NewJSONHandler(&buf, nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	d.sk.Audit, d.oc.Audit = l, l
	reconcile := func(r interface {
		Reconcile(context.Context, ctrl.Request) (ctrl.Result, error)
	}, obj client.Object) {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)}); err != nil {
			t.Fatalf("reconcile %s: %v", obj.GetName(), err)
		}
	}

	// The first key, then the scheduled rotation (pre-published 1h before).
	reconcile(d.sk, sk)
	clock.Step(719 * time.Hour)
	reconcile(d.sk, sk)
	clock.Step(time.Hour)
	reconcile(d.sk, sk)
	var got latchkeyv1.SigningKey
	if err := c.Get(ctx, client.ObjectKeyFromObject(sk), &got); err != nil {
		t.Fatal(err)
	}

	reconcile(d.oc, svc)
	var cur latchkeyv1.OAuthClient
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Annotations = map[string]string{latchkeyv1.AnnotationRotateSecret: "1"}
	if err := c.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	reconcile(d.oc, svc)

	var keyEvents, secretEvents []map[string]any
	for line := range strings.Lines(buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		switch r[audit.KeyEvent] {
		case audit.KeyRotated:
			keyEvents = append(keyEvents, r)
		case audit.ClientSecretRotated:
			secretEvents = append(secretEvents, r)
		}
	}
	if len(keyEvents) != 2 || keyEvents[1]["keyID"] != got.Status.ActiveKeyID || keyEvents[1]["signingKey"] != "default" {
		t.Fatalf("signing_key_rotated records = %v, want 2, the last for %s", keyEvents, got.Status.ActiveKeyID)
	}
	if len(secretEvents) != 1 || secretEvents[0][audit.KeyClient] != "svc.default" || secretEvents[0]["oauthClient"] != "svc" {
		t.Fatalf("client_secret_rotated records = %v", secretEvents)
	}
	if n := counterValue(t, reg, "latchkey_controller_signing_key_rotations_total"); n != 2 {
		t.Errorf("key rotations counted %v, want 2", n)
	}
	if n := counterValue(t, reg, "latchkey_controller_client_secret_rotations_total"); n != 1 {
		t.Errorf("secret rotations counted %v, want 1", n)
	}

	// No secret value or private key reached the stream.
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		for _, k := range []string{latchkeyv1.KeyDataPrivateKey, latchkeyv1.ClientSecretDataClientSecret, latchkeyv1.ClientSecretDataPreviousSecret} {
			if v := s.Data[k]; len(v) > 0 && strings.Contains(buf.String(), string(v)) {
				t.Errorf("the audit stream holds %s of Secret %s", k, s.Name)
			}
		}
	}
}

// counterValue is the value of the unlabelled counter name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
