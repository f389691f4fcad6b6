package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

// TestKeySecretCorrupt corrupts the Secret of the key that signs, twice: first its PEM, then
// (on the replacement) its kid, which is set to the kid of the first key so that two Secrets
// claim one kid (SECURITY-CASES 88).
//
// Each time: the SigningKey reports Ready=False with reason KeySecretInvalid and a Warning
// Event; the token server keeps issuing tokens throughout (with its last good copy of the key);
// a replacement key is generated and pre-published before it signs; the corrupt Secret is kept
// (so the problem stays visible) and the corrupted key stays in the JWKS ConfigMap and /jwks,
// because tokens it signed are still live and must verify.
func TestKeySecretCorrupt(t *testing.T) {
	t.Parallel()
	const prePublish = 2 * time.Second
	s := newSystem(t, systemOptions{signingKey: map[string]any{"prePublish": prePublish.String()}})
	ctx := t.Context()
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "reports"))
	creds := s.waitCredentials(ns, "reports")
	inv := watchKeyInvariants(t, s, defaultKey)

	tokens := []string{b.eventuallyToken(creds, 30*time.Second)}
	k0 := kidOf(t, tokens[0])

	corruptions := []struct {
		name    string
		corrupt func(sec *corev1.Secret)
	}{
		{"bad PEM", func(sec *corev1.Secret) {
			sec.Data[latchkeyv1.KeyDataPrivateKey] = []byte("-----BEGIN NOT A KEY-----\nAAAA\n-----END NOT A KEY-----\n")
		}},
		{"kid of another key", func(sec *corev1.Secret) {
			sec.Data[latchkeyv1.KeyDataKeyID] = []byte(k0)
		}},
	}
	corrupted := []string{}
	for i, c := range corruptions {
		signing := kidOf(t, tokens[len(tokens)-1])
		secretName := keySecretOf(t, s, signing)
		var sec corev1.Secret
		if err := admin.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: secretName}, &sec); err != nil {
			t.Fatal(err)
		}
		c.corrupt(&sec)
		if err := admin.Update(ctx, &sec); err != nil {
			t.Fatal(err)
		}
		corrupted = append(corrupted, signing)
		t.Logf("%s: corrupted Secret %s of the signing key %s", c.name, secretName, signing)

		// The server keeps issuing tokens, each with a kid the ConfigMap published before the
		// request, until a replacement key signs.
		var replacement string
		eventually(t, 60*time.Second, func() error {
			doc, err := s.jwksConfigMap(defaultKey)
			if err != nil {
				return err
			}
			published, err := kids(doc)
			if err != nil {
				return err
			}
			tok := b.mustToken(creds)
			tokens = append(tokens, tok)
			kid := kidOf(t, tok)
			if !slices.Contains(published, kid) {
				t.Fatalf("%s: token signed with %s, which the JWKS ConfigMap did not publish (%v)", c.name, kid, published)
			}
			if slices.Contains(corrupted, kid) {
				return fmt.Errorf("still signing with %s", kid)
			}
			replacement = kid
			return nil
		})

		// The replacement went through pre-publication.
		tl := timelineOf(t, s, replacement)
		if got := tl.ActivatesAt.Sub(tl.CreatedAt); got < prePublish {
			t.Errorf("%s: the replacement key activates %v after its creation, want prePublish (%v)", c.name, got, prePublish)
		}

		// Ready went False with KeySecretInvalid, announced by a Warning Event; it is True
		// again (still naming the problem) once the replacement signs.
		eventually(t, 30*time.Second, func() error {
			evs, err := events(ctx, s.ns, "SigningKey", defaultKey, latchkeyv1.ReasonKeySecretInvalid)
			if err != nil {
				return err
			}
			n := 0
			for _, e := range evs {
				if e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "Ready=False") && strings.Contains(e.Note, signing) {
					n++
				}
			}
			if n == 0 {
				return fmt.Errorf("no Warning KeySecretInvalid Event with Ready=False about key %s (%d events)", signing, len(evs))
			}
			sk, err := s.signingKey(defaultKey)
			if err != nil {
				return err
			}
			cond, err := readyCondition(sk.Status.Conditions)
			if err != nil {
				return err
			}
			if cond.Status != metav1.ConditionTrue || cond.Reason != latchkeyv1.ReasonKeySecretInvalid {
				return fmt.Errorf("Ready=%s %s, want True KeySecretInvalid once the replacement signs", cond.Status, cond.Reason)
			}
			if sk.Status.ActiveKeyID != replacement || len(activeKeys(sk)) != 1 {
				return fmt.Errorf("activeKeyID %s (active %v), want %s", sk.Status.ActiveKeyID, activeKeys(sk), replacement)
			}
			return nil
		})

		// Nothing that can verify a live token left: every kid that signed is published, in the
		// ConfigMap and in /jwks, and the corrupt Secrets are still there.
		checkAllVerify(t, s, b, tokens)
		for _, kid := range corrupted {
			keySecretOf(t, s, kid)
		}
		t.Logf("%s: replaced by %s (%d/%d)", c.name, replacement, i+1, len(corruptions))
	}
	inv.stop()
}

// TestRevokedKeyID revokes kids with spec.revokedKeyIDs (SECURITY-CASES 72, decision D6).
//
// First the Active key while a Next key waits (prePublish 1h): the Next key is promoted at
// once. Then that one, with no Next key: a fresh key activates at once. Each time the revoked
// kid leaves the JWKS ConfigMap and /jwks, its Secret goes, no token is signed with it once
// another kid has been, and it never comes back. A verifier that cached the old set refreshes
// on the new kid and from then on rejects the revoked one (jwkset CVE-2025-22149: a refresh
// must replace the set, not append to it).
func TestRevokedKeyID(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{signingKey: map[string]any{"prePublish": "1h"}})
	ctx := t.Context()
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "audit"))
	creds := s.waitCredentials(ns, "audit")
	tok0 := b.eventuallyToken(creds, 30*time.Second)
	k0 := kidOf(t, tok0)

	// A resource server started now caches the set with k0 only.
	v, err := verifier.New(ctx, s.issuer, verifier.WithAudience(audience), verifier.WithJWKSRefresh(time.Second, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok0); err != nil {
		t.Fatal(err)
	}

	// A forced rotation leaves a Next key waiting an hour.
	sk, err := s.signingKey(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := annotate(ctx, sk, latchkeyv1.AnnotationRotate, "before-revocation"); err != nil {
		t.Fatal(err)
	}
	var next string
	eventually(t, 30*time.Second, func() error {
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			return err
		}
		for _, k := range sk.Status.Keys {
			if k.State == latchkeyv1.KeyStateNext {
				next = k.KeyID
				return nil
			}
		}
		return fmt.Errorf("no Next key yet: %+v", sk.Status.Keys)
	})

	revoked := []string{}
	for _, step := range []struct {
		name string
		kid  string
		// want is the kid that must sign afterwards ("" for a fresh key).
		want string
	}{
		{"active key with a Next key waiting", k0, next},
		{"active key with no Next key", next, ""},
	} {
		revoked = append(revoked, step.kid)
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			t.Fatal(err)
		}
		sk.Spec.RevokedKeyIDs = slices.Clone(revoked)
		if err := admin.Update(ctx, sk); err != nil {
			t.Fatal(err)
		}

		// Tokens move off the revoked kid; once they have, none carries it again. A 503 while
		// no key may sign is the one other acceptable answer.
		var signer, tok string
		movedOn := false
		eventually(t, 30*time.Second, func() error {
			r, err := b.token(creds.ClientID, creds.ClientSecret)
			if err != nil {
				return err
			}
			switch {
			case r.Status == http.StatusServiceUnavailable && r.Error == "temporarily_unavailable":
				return errors.New("no signing key for a moment")
			case r.Status != http.StatusOK:
				t.Fatalf("%s: token request during revocation: %v", step.name, r)
			}
			kid := kidOf(t, r.AccessToken)
			if slices.Contains(revoked, kid) {
				if movedOn {
					t.Fatalf("%s: a token was signed with revoked kid %s after another kid had taken over", step.name, kid)
				}
				return fmt.Errorf("still signing with revoked %s", kid)
			}
			movedOn = true
			signer, tok = kid, r.AccessToken
			return nil
		})
		if step.want != "" && signer != step.want {
			t.Errorf("%s: tokens signed with %s, want the promoted Next key %s", step.name, signer, step.want)
		}
		for range 5 {
			if kid := kidOf(t, b.mustToken(creds)); slices.Contains(revoked, kid) {
				t.Fatalf("%s: signed with revoked kid %s again", step.name, kid)
			}
		}

		// The revoked kid is gone from the ConfigMap, /jwks and the Secrets.
		eventually(t, 15*time.Second, func() error {
			doc, err := s.jwksConfigMap(defaultKey)
			if err != nil {
				return err
			}
			code, served, err := b.get("/jwks")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("/jwks: %d %v", code, err)
			}
			secrets, err := s.keySecrets(defaultKey)
			if err != nil {
				return err
			}
			for _, kid := range revoked {
				for name, d := range map[string][]byte{"the ConfigMap": doc, "/jwks": served} {
					published, err := kids(d)
					if err != nil {
						return err
					}
					if slices.Contains(published, kid) {
						return fmt.Errorf("revoked kid %s still in %s", kid, name)
					}
				}
				for _, sec := range secrets {
					if string(sec.Data[latchkeyv1.KeyDataKeyID]) == kid {
						return fmt.Errorf("revoked kid %s still has Secret %s", kid, sec.Name)
					}
				}
			}
			return nil
		})

		// The cached verifier meets an unknown kid, refreshes, and verifies it; after that
		// refresh the revoked kid no longer verifies.
		eventually(t, 15*time.Second, func() error {
			_, err := v.Verify(ctx, tok)
			return err
		})
		if _, err := v.Verify(ctx, tok0); !errors.Is(err, verifier.ErrKeyNotFound) {
			t.Errorf("%s: a token signed with revoked kid %s: %v, want ErrKeyNotFound", step.name, k0, err)
		}
		sk, err = s.signingKey(defaultKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range sk.Status.Keys {
			if slices.Contains(revoked, k.KeyID) {
				t.Errorf("%s: revoked kid %s still in status.keys", step.name, k.KeyID)
			}
		}
	}
}

// keySecretOf returns the name of the Secret that status.keys names for kid.
func keySecretOf(t *testing.T, s *system, kid string) string {
	t.Helper()
	sk, err := s.signingKey(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range sk.Status.Keys {
		if k.KeyID == kid {
			var sec corev1.Secret
			if err := admin.Get(t.Context(), client.ObjectKey{Namespace: s.ns, Name: k.SecretName}, &sec); err != nil {
				t.Fatalf("the Secret %s of key %s: %v", k.SecretName, kid, err)
			}
			return k.SecretName
		}
	}
	t.Fatalf("kid %s is not in status.keys", kid)
	return ""
}

// timelineOf reads the timeline a valid key Secret records for kid.
func timelineOf(t *testing.T, s *system, kid string) keymaterial.Timeline {
	t.Helper()
	secrets, err := s.keySecrets(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	for i := range secrets {
		key, err := keymaterial.Decode(&secrets[i])
		if err != nil || key.KeyID != kid {
			continue
		}
		tl, err := keymaterial.ParseTimeline(&secrets[i])
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	t.Fatalf("no valid Secret holds key %s", kid)
	return keymaterial.Timeline{}
}

// checkAllVerify checks that every token verifies against the JWKS ConfigMap and the JWKS the
// binary serves: no key that signed a live token has been dropped.
func checkAllVerify(t *testing.T, s *system, b *binary, tokens []string) {
	t.Helper()
	doc, err := s.jwksConfigMap(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	code, served, err := b.get("/jwks")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/jwks: %d %v", code, err)
	}
	seen := map[string]bool{}
	for _, tok := range tokens {
		kid := kidOf(t, tok)
		if seen[kid] {
			continue
		}
		seen[kid] = true
		if err := s.verifyWithJWKS(doc, tok); err != nil {
			t.Errorf("a token signed with %s does not verify against the ConfigMap: %v", kid, err)
		}
		if err := s.verifyWithJWKS(served, tok); err != nil {
			t.Errorf("a token signed with %s does not verify against %s's /jwks: %v", kid, b.name, err)
		}
	}
}
