package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// TestTwoManagersRacing runs two replicas on one SigningKey under repeated forced rotations,
// once as the chart runs them (leader election on) and once with leader election off, the
// split brain client-go's leader election does not rule out (it gives no fencing).
//
// SECURITY-CASES 89: every write is optimistic, so whatever the interleaving, no observed
// status ever has two Active keys, no two key Secrets ever hold one kid, and the ConfigMap,
// status and Secrets agree once it settles. SECURITY-CASES 71: a token from either replica
// verifies against the JWKS served by the other at that moment, because no key signs before
// it has been published for prePublish.
func TestTwoManagersRacing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		leaderElect string
	}{
		{"leader election", "true"},
		{"split brain without leader election", "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			racingRotations(t, tc.leaderElect)
		})
	}
}

func racingRotations(t *testing.T, leaderElect string) {
	s := newSystem(t, systemOptions{signingKey: map[string]any{"prePublish": "2s"}})
	ctx := t.Context()
	opts := binaryOptions{flags: map[string]string{"leader-elect": leaderElect}}
	replicas := []*binary{s.start("replica-a", opts), s.start("replica-b", opts)}
	for _, b := range replicas {
		b.waitReady(60 * time.Second)
	}
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "racer"))
	creds := s.waitCredentials(ns, "racer")
	for _, b := range replicas {
		b.eventuallyToken(creds, 30*time.Second)
	}

	inv := watchKeyInvariants(t, s, defaultKey)

	// Rotations every half second, faster than prePublish, so that some find a Next key to
	// bring forward and some must generate one; both controllers (without leader election)
	// act on every one of them.
	const rotations = 10
	var tokens []string
	last := ""
	for i := range rotations {
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			t.Fatal(err)
		}
		last = fmt.Sprintf("race-%d", i)
		if err := annotate(ctx, sk, latchkeyv1.AnnotationRotate, last); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			tokens = append(tokens, crossCheck(t, s, replicas)...)
		}
	}

	// It settles: the last request handled, Ready, no key waiting to activate.
	eventually(t, 60*time.Second, func() error {
		tokens = append(tokens, crossCheck(t, s, replicas)...)
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			return err
		}
		if sk.Status.LastRotateRequest != last {
			return fmt.Errorf("lastRotateRequest %q, want %q", sk.Status.LastRotateRequest, last)
		}
		for _, k := range sk.Status.Keys {
			if k.State == latchkeyv1.KeyStateNext {
				return fmt.Errorf("key %s still Next", k.KeyID)
			}
		}
		return checkKeysConverged(s, defaultKey)
	})
	inv.stop()

	// Every token either replica issued still verifies, against the ConfigMap and against the
	// JWKS each replica serves.
	doc, err := s.jwksConfigMap(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	docs := [][]byte{doc}
	for _, b := range replicas {
		code, body, err := b.get("/jwks")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s /jwks: %d %v", b.name, code, err)
		}
		docs = append(docs, body)
	}
	kidsSeen := map[string]bool{}
	for _, tok := range tokens {
		kidsSeen[kidOf(t, tok)] = true
	}
	for kid := range kidsSeen {
		for i, d := range docs {
			published, err := kids(d)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(published, kid) {
				t.Errorf("kid %s signed tokens but left JWKS #%d (ConfigMap, then each replica) before they expired", kid, i)
			}
		}
	}
	if len(kidsSeen) < 2 {
		t.Errorf("tokens were signed with %d key(s) across %d rotations; the rotations did not happen", len(kidsSeen), rotations)
	}
	// How often a controller lost an optimistic-concurrency race (logged at debug level): with
	// leader election off, the two controllers should have collided.
	races := 0
	for _, b := range replicas {
		out := b.out.String()
		for _, msg := range []string{"already exists, re-reading", "changed meanwhile, retrying", "lost a race, retrying"} {
			races += strings.Count(out, msg)
		}
	}
	t.Logf("%d tokens, %d signing keys, %d status versions observed, %d lost write races", len(tokens), len(kidsSeen), inv.versions(), races)
}

// crossCheck gets a token from each replica and verifies it against the JWKS the other replica
// serves right after (SECURITY-CASES 71). It returns the tokens.
func crossCheck(t *testing.T, s *system, replicas []*binary) []string {
	t.Helper()
	var out []string
	for i, b := range replicas {
		other := replicas[(i+1)%len(replicas)]
		tok := b.mustToken(mustCreds(t, s))
		code, body, err := other.get("/jwks")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s /jwks: %d %v", other.name, code, err)
		}
		if err := s.verifyWithJWKS(body, tok); err != nil {
			t.Fatalf("a token from %s (kid %s) does not verify against the JWKS of %s: %v", b.name, kidOf(t, tok), other.name, err)
		}
		out = append(out, tok)
	}
	return out
}

// mustCreds reads the racer client's credentials (cached per system).
func mustCreds(t *testing.T, s *system) credentials {
	t.Helper()
	c, err := s.readCredentials(s.clientNS[0], "racer"+latchkeyv1.DefaultClientSecretSuffix)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkKeysConverged checks that a SigningKey's status, JWKS ConfigMap and key Secrets tell
// the same story (SECURITY-CASES 89, 90): one Active key, which is status.activeKeyID; the same
// kids in status.keys, the ConfigMap and the Secrets; each kid in one Secret only.
func checkKeysConverged(s *system, name string) error {
	sk, err := s.signingKey(name)
	if err != nil {
		return err
	}
	c, err := readyCondition(sk.Status.Conditions)
	if err != nil {
		return err
	}
	if c.Status != "True" || c.ObservedGeneration != sk.Generation {
		return fmt.Errorf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	if a := activeKeys(sk); len(a) != 1 || a[0] != sk.Status.ActiveKeyID {
		return fmt.Errorf("active keys %v, activeKeyID %q", a, sk.Status.ActiveKeyID)
	}
	var statusKids []string
	for _, k := range sk.Status.Keys {
		if slices.Contains(statusKids, k.KeyID) {
			return fmt.Errorf("kid %s twice in status.keys", k.KeyID)
		}
		statusKids = append(statusKids, k.KeyID)
	}
	doc, err := s.jwksConfigMap(name)
	if err != nil {
		return err
	}
	cmKids, err := kids(doc)
	if err != nil {
		return err
	}
	secrets, err := s.keySecrets(name)
	if err != nil {
		return err
	}
	var secretKids []string
	for _, sec := range secrets {
		kid := string(sec.Data[latchkeyv1.KeyDataKeyID])
		if slices.Contains(secretKids, kid) {
			return fmt.Errorf("kid %s held by two Secrets", kid)
		}
		secretKids = append(secretKids, kid)
	}
	slices.Sort(statusKids)
	slices.Sort(cmKids)
	slices.Sort(secretKids)
	if !slices.Equal(statusKids, cmKids) || !slices.Equal(statusKids, secretKids) {
		return fmt.Errorf("kids disagree: status %v, ConfigMap %v, Secrets %v", statusKids, cmKids, secretKids)
	}
	return nil
}

// keyInvariants watches a SigningKey and its key Secrets for the whole of a test and fails it
// on any observed state with two Active keys, a kid twice in status.keys, or one kid in two
// valid key Secrets at once: states a poll could miss.
type keyInvariants struct {
	t       *testing.T
	cancel  context.CancelFunc
	watches []watch.Interface
	wg      sync.WaitGroup
	once    sync.Once

	mu    sync.Mutex
	count int
}

func watchKeyInvariants(t *testing.T, s *system, name string) *keyInvariants {
	ctx, cancel := context.WithCancel(t.Context())
	inv := &keyInvariants{t: t, cancel: cancel}
	skw, err := admin.Watch(ctx, &latchkeyv1.SigningKeyList{}, client.InNamespace(s.ns))
	if err != nil {
		t.Fatal(err)
	}
	secw, err := admin.Watch(ctx, &corev1.SecretList{}, client.InNamespace(s.ns),
		client.MatchingLabels{latchkeyv1.LabelSigningKey: name})
	if err != nil {
		t.Fatal(err)
	}
	inv.watches = []watch.Interface{skw, secw}
	t.Cleanup(inv.stop)
	inv.wg.Add(2)
	go func() {
		defer inv.wg.Done()
		for ev := range skw.ResultChan() {
			sk, ok := ev.Object.(*latchkeyv1.SigningKey)
			if !ok || sk.Name != name {
				continue
			}
			inv.mu.Lock()
			inv.count++
			inv.mu.Unlock()
			if a := activeKeys(sk); len(a) > 1 {
				t.Errorf("SigningKey resourceVersion %s has %d Active keys: %v", sk.ResourceVersion, len(a), a)
			}
			var seen []string
			for _, k := range sk.Status.Keys {
				if slices.Contains(seen, k.KeyID) {
					t.Errorf("SigningKey resourceVersion %s lists kid %s twice", sk.ResourceVersion, k.KeyID)
				}
				seen = append(seen, k.KeyID)
			}
		}
	}()
	go func() {
		defer inv.wg.Done()
		holder := map[string]string{} // kid -> Secret name
		for ev := range secw.ResultChan() {
			sec, ok := ev.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			// Only Secrets that hold a usable key count: a test may corrupt one on purpose.
			key, err := keymaterial.Decode(sec)
			if err != nil {
				for k, n := range holder {
					if n == sec.Name {
						delete(holder, k)
					}
				}
				continue
			}
			kid := key.KeyID
			if ev.Type == watch.Deleted {
				if holder[kid] == sec.Name {
					delete(holder, kid)
				}
				continue
			}
			for k, n := range holder {
				if n == sec.Name && k != kid {
					delete(holder, k)
				}
			}
			if other, ok := holder[kid]; ok && other != sec.Name {
				t.Errorf("kid %s is held by Secrets %s and %s at once", kid, other, sec.Name)
			}
			holder[kid] = sec.Name
		}
	}()
	return inv
}

func (inv *keyInvariants) stop() {
	inv.once.Do(func() {
		inv.cancel()
		for _, w := range inv.watches {
			w.Stop()
		}
		inv.wg.Wait()
	})
}

func (inv *keyInvariants) versions() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.count
}
