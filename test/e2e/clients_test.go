package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// TestClientSecretDeleted: a user deletes a Generated client's Secret (SECURITY-CASES 91).
//
// The server answers invalid_client for the client, never a 5xx, from the moment its cache
// sees the deletion. The documented recovery (controllers/doc.go) follows: the controller
// writes a NEW secret and says so with a Warning Event. The old secret is never resurrected,
// not even as the previous secret of a grace period; the new one works.
func TestClientSecretDeleted(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	ctx := t.Context()
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	oc := s.createClient(confidentialClient(ns, "billing"))
	old := s.waitCredentials(ns, oc.Name)
	b.eventuallyToken(old, 30*time.Second)

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: oc.EffectiveSecretName()}}
	if err := admin.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}

	// Until the controller has written the new Secret and the server's cache has it, the old
	// secret may be accepted a moment longer (the cache lags the deletion) or refused with
	// invalid_client; nothing else is an acceptable answer.
	var cur credentials
	refused := false
	eventually(t, 30*time.Second, func() error {
		r, err := b.token(old.ClientID, old.ClientSecret)
		if err != nil {
			return err
		}
		switch {
		case r.Status == http.StatusUnauthorized && r.Error == "invalid_client":
			refused = true
			if r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("invalid_client without WWW-Authenticate")
			}
		case r.Status == http.StatusOK && !refused:
		default:
			t.Fatalf("old secret after its Secret was deleted: %v, want invalid_client", r)
		}
		c, err := s.readCredentials(ns, oc.EffectiveSecretName())
		if err != nil {
			return err
		}
		if c.ClientSecret == old.ClientSecret {
			t.Fatal("the controller resurrected the deleted client secret")
		}
		cur = c
		if !refused {
			return fmt.Errorf("old secret still accepted")
		}
		return nil
	})
	if cur.ClientID != old.ClientID {
		t.Errorf("the recreated Secret has client-id %q, want %q", cur.ClientID, old.ClientID)
	}
	var recreated corev1.Secret
	if err := admin.Get(ctx, client.ObjectKeyFromObject(sec), &recreated); err != nil {
		t.Fatal(err)
	}
	if prev := recreated.Data[latchkeyv1.ClientSecretDataPreviousSecret]; len(prev) > 0 {
		t.Errorf("the recreated Secret carries a previous secret: the deleted one must not get a grace period")
	}

	b.eventuallyToken(cur, 30*time.Second)
	for range 3 {
		r, err := b.token(old.ClientID, old.ClientSecret)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusUnauthorized || r.Error != "invalid_client" {
			t.Fatalf("the deleted secret after recovery: %v, want 401 invalid_client", r)
		}
	}
	eventually(t, 30*time.Second, func() error {
		evs, err := events(ctx, ns, "OAuthClient", oc.Name, latchkeyv1.ReasonSecretGenerated)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "NEW") {
				return nil
			}
		}
		return fmt.Errorf("no Warning Event about the new client secret among %d SecretGenerated events", len(evs))
	})
}

// TestClientIDSquatting: a later OAuthClient in another namespace declares the clientID of an
// existing one (SECURITY-CASES 87). The later one gets ClientIDConflict, without being told
// who owns the client_id. The original keeps working. The squatter never gets a token for that
// client_id, neither with credentials the controller would write for it (none are written)
// nor with credentials it writes itself (an External Secret), and its namespace never
// receives the original's Secret.
func TestClientIDSquatting(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{clientNamespaces: 2})
	ctx := t.Context()
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	owner, squatter := s.clientNS[0], s.clientNS[1]
	const clientID = "payments-api"

	orig := confidentialClient(owner, "ledger")
	orig.Spec.ClientID = clientID
	s.createClient(orig)
	creds := s.waitCredentials(owner, orig.Name)
	b.eventuallyToken(creds, 30*time.Second)

	// creationTimestamp has one-second resolution and an equal one falls to a UID tie-break:
	// make sure the squatter is strictly later, as it is in the case under test.
	eventually(t, 5*time.Second, func() error {
		if !time.Now().Truncate(time.Second).After(orig.CreationTimestamp.Time) {
			return fmt.Errorf("same second as the original")
		}
		return nil
	})

	// A squatter with a Generated secret, and one with a Secret of its own making.
	gen := confidentialClient(squatter, "squat-generated")
	gen.Spec.ClientID = clientID
	s.createClient(gen)
	const squatterSecret = "squatter-chosen-secret-0123456789abcdef"
	s.leaks.add("squatter's client secret", squatterSecret)
	own := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: squatter, Name: "squat-creds", Labels: map[string]string{
			latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeClientCredentials,
		}},
		Data: map[string][]byte{
			latchkeyv1.ClientSecretDataClientID:     []byte(clientID),
			latchkeyv1.ClientSecretDataClientSecret: []byte(squatterSecret),
		},
	}
	if err := admin.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	ext := confidentialClient(squatter, "squat-external")
	ext.Spec.ClientID = clientID
	ext.Spec.SecretSource = latchkeyv1.SecretSourceExternal
	ext.Spec.SecretName = own.Name
	s.createClient(ext)

	for _, name := range []string{gen.Name, ext.Name} {
		eventually(t, 30*time.Second, func() error {
			var oc latchkeyv1.OAuthClient
			if err := admin.Get(ctx, client.ObjectKey{Namespace: squatter, Name: name}, &oc); err != nil {
				return err
			}
			c := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionReady)
			if c == nil || c.ObservedGeneration != oc.Generation {
				return fmt.Errorf("%s not reconciled yet", name)
			}
			if c.Status != metav1.ConditionFalse || c.Reason != latchkeyv1.ReasonClientIDConflict {
				t.Fatalf("squatter %s: Ready=%s %s, want False ClientIDConflict", name, c.Status, c.Reason)
			}
			if strings.Contains(c.Message, owner) || strings.Contains(c.Message, orig.Name) {
				t.Errorf("squatter %s is told who owns the client_id: %q", name, c.Message)
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error {
			evs, err := events(ctx, squatter, "OAuthClient", name, latchkeyv1.ReasonClientIDConflict)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("no Warning ClientIDConflict Event for %s", name)
		})
	}

	// The squatter's own secret never gets a token for the client_id; the owner's still does.
	for range 5 {
		r, err := b.token(clientID, squatterSecret)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusUnauthorized || r.Error != "invalid_client" || r.AccessToken != "" {
			t.Fatalf("the squatter's credentials: %v, want 401 invalid_client", r)
		}
		b.mustToken(creds)
	}

	// Nothing of the owner's reached the squatter's namespace: no Generated Secret, and no
	// Secret there holds the owner's client secret.
	var list corev1.SecretList
	if err := admin.List(ctx, &list, client.InNamespace(squatter)); err != nil {
		t.Fatal(err)
	}
	for _, sec := range list.Items {
		if sec.Name == gen.EffectiveSecretName() {
			t.Errorf("the controller wrote Secret %s/%s for the squatter", squatter, sec.Name)
		}
		for k, v := range sec.Data {
			if string(v) == creds.ClientSecret {
				t.Errorf("Secret %s/%s key %s holds the owner's client secret", squatter, sec.Name, k)
			}
		}
	}
	// The owner's Secret is untouched, and its client is still Ready.
	again, err := s.readCredentials(owner, orig.EffectiveSecretName())
	if err != nil {
		t.Fatal(err)
	}
	if again != creds {
		t.Errorf("the owner's credentials changed when the squatter appeared")
	}
	s.waitCredentials(owner, orig.Name)
}
