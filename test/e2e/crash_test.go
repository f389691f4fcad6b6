package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestControllerKilledMidRotation SIGKILLs the binary at a different point of each of several
// forced rotations and restarts it (SECURITY-CASES 90). The points are chosen by watching the
// controller's own writes: at once, when the new key's Secret appears, when the JWKS ConfigMap
// is written, when the new key is armed, and at fixed delays that fall before, around and after
// its activation.
//
// After every restart the system converges by itself: the rotation that was asked for happens
// exactly once (one new key per rotation, none lost, none duplicated), status, ConfigMap and
// Secrets agree, exactly one key is Active, and every key that signed a token is still
// published, so every token issued so far verifies. Throughout, no observed state has two
// Active keys or one kid in two Secrets.
//
// Leader election is off here: a SIGKILLed leader keeps its Lease for 15s, which would only
// make each restart wait. Convergence after a crash does not depend on the election, and
// TestTwoManagersRacing runs two controllers.
func TestControllerKilledMidRotation(t *testing.T) {
	t.Parallel()
	const prePublish = time.Second
	s := newSystem(t, systemOptions{signingKey: map[string]any{"prePublish": prePublish.String()}})
	b := s.start("replica-0", binaryOptions{flags: map[string]string{"leader-elect": "false"}})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "crash"))
	creds := s.waitCredentials(ns, "crash")
	inv := watchKeyInvariants(t, s, defaultKey)

	points := []struct {
		name string
		arm  func(t *testing.T, s *system) <-chan struct{}
	}{
		{"at once", after(0)},
		{"when the new key Secret is created", onNewKeySecret(watch.Added)},
		{"when the JWKS ConfigMap is written", onJWKSWrite},
		{"when the new key is armed", onNewKeySecret(watch.Modified)},
		{"after 50ms", after(50 * time.Millisecond)},
		{"after 300ms", after(300 * time.Millisecond)},
		{"at the activation", after(prePublish)},
		{"after the activation", after(prePublish + 200*time.Millisecond)},
	}
	var tokens []string
	interrupted := 0
	for i, p := range points {
		tokens = append(tokens, b.eventuallyToken(creds, 30*time.Second))
		fire := p.arm(t, s)
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			t.Fatal(err)
		}
		request := fmt.Sprintf("kill-%d", i)
		if err := annotate(t.Context(), sk, latchkeyv1.AnnotationRotate, request); err != nil {
			t.Fatal(err)
		}
		select {
		case <-fire:
		case <-time.After(30 * time.Second):
			t.Fatalf("kill point %q never came", p.name)
		}
		b.kill()
		state := interruptedState(t, s, request)
		b.launch()
		b.waitReady(60 * time.Second)

		eventually(t, 60*time.Second, func() error {
			sk, err := s.signingKey(defaultKey)
			if err != nil {
				return err
			}
			if sk.Status.LastRotateRequest != request {
				return fmt.Errorf("lastRotateRequest %q, want %q", sk.Status.LastRotateRequest, request)
			}
			for _, k := range sk.Status.Keys {
				if k.State == latchkeyv1.KeyStateNext {
					return fmt.Errorf("key %s still Next", k.KeyID)
				}
			}
			if err := checkKeysConverged(s, defaultKey); err != nil {
				return err
			}
			// One key per rotation, plus the first: none lost, none made twice.
			if n := len(sk.Status.Keys); n != i+2 {
				return fmt.Errorf("%d keys after %d rotations, want %d", n, i+1, i+2)
			}
			return nil
		})
		tokens = append(tokens, b.eventuallyToken(creds, 30*time.Second))
		checkAllVerify(t, s, b, tokens)
		doc, err := s.jwksConfigMap(defaultKey)
		if err != nil {
			t.Fatal(err)
		}
		published, err := kids(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			if kid := kidOf(t, tok); !slices.Contains(published, kid) {
				t.Fatalf("after a kill %s, kid %s, which signed a live token, left the JWKS", p.name, kid)
			}
		}
		t.Logf("killed %s, leaving %s; converged with %d keys", p.name, state, len(published))
		if state != "a completed rotation" {
			interrupted++
		}
	}
	inv.stop()
	// The kill points are meant to land between the controller's writes; if none did, the test
	// proved nothing about partial rotations.
	if interrupted == 0 {
		t.Errorf("no kill interrupted a rotation")
	}
}

// interruptedState describes what a killed controller left behind for the rotation request.
func interruptedState(t *testing.T, s *system, request string) string {
	t.Helper()
	sk, err := s.signingKey(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := s.keySecrets(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := s.jwksConfigMap(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	published, err := kids(doc)
	if err != nil {
		t.Fatal(err)
	}
	inStatus := map[string]bool{}
	for _, k := range sk.Status.Keys {
		inStatus[k.KeyID] = true
	}
	var found []string
	for _, sec := range secrets {
		kid := string(sec.Data[latchkeyv1.KeyDataKeyID])
		a := sec.Annotations
		switch {
		case !slices.Contains(published, kid):
			found = append(found, "an unpublished key Secret")
		case a[latchkeyv1.AnnotationKeyActivatesAt] == a[latchkeyv1.AnnotationKeyRetiresAt]:
			found = append(found, "a published key not yet armed")
		case !inStatus[kid]:
			found = append(found, "a key missing from status")
		}
	}
	switch {
	case len(found) > 0:
		return strings.Join(found, ", ")
	case sk.Status.LastRotateRequest != request:
		return "the request not yet handled"
	default:
		for _, k := range sk.Status.Keys {
			if k.State == latchkeyv1.KeyStateNext {
				return "a pre-published key waiting to activate"
			}
		}
		return "a completed rotation"
	}
}

// after fires d after it is armed (the annotation follows at once).
func after(d time.Duration) func(*testing.T, *system) <-chan struct{} {
	return func(*testing.T, *system) <-chan struct{} {
		ch := make(chan struct{})
		time.AfterFunc(d, func() { close(ch) })
		return ch
	}
}

// onNewKeySecret fires on the first event of type typ about a key Secret that did not exist
// when it was armed.
func onNewKeySecret(typ watch.EventType) func(*testing.T, *system) <-chan struct{} {
	return func(t *testing.T, s *system) <-chan struct{} {
		var list corev1.SecretList
		if err := admin.List(t.Context(), &list, client.InNamespace(s.ns), client.MatchingLabels{latchkeyv1.LabelSigningKey: defaultKey}); err != nil {
			t.Fatal(err)
		}
		existing := map[string]bool{}
		for _, sec := range list.Items {
			existing[sec.Name] = true
		}
		return fireOn(t, &corev1.SecretList{}, list.ResourceVersion, s.ns, func(ev watch.Event) bool {
			sec, ok := ev.Object.(*corev1.Secret)
			return ok && ev.Type == typ && !existing[sec.Name] && sec.Labels[latchkeyv1.LabelSigningKey] == defaultKey
		})
	}
}

// onJWKSWrite fires when the default key's JWKS ConfigMap is next written.
func onJWKSWrite(t *testing.T, s *system) <-chan struct{} {
	var list corev1.ConfigMapList
	if err := admin.List(t.Context(), &list, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	return fireOn(t, &corev1.ConfigMapList{}, list.ResourceVersion, s.ns, func(ev watch.Event) bool {
		cm, ok := ev.Object.(*corev1.ConfigMap)
		return ok && ev.Type == watch.Modified && cm.Name == defaultKey+latchkeyv1.JWKSConfigMapSuffix
	})
}

// fireOn watches a namespace from resourceVersion rv (so existing objects send no events) and
// closes the returned channel on the first event that matches.
func fireOn(t *testing.T, list client.ObjectList, rv, ns string, match func(watch.Event) bool) <-chan struct{} {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := admin.Watch(ctx, list, &client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ResourceVersion: rv}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		defer cancel()
		defer w.Stop()
		for ev := range w.ResultChan() {
			if match(ev) {
				close(ch)
				return
			}
		}
	}()
	return ch
}
