package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

const unavailable = "the service is temporarily unavailable, retry later"

// Case 68, 76, 78, 80: Redis killed, restarted, flushed, and its scripts flushed.
func TestRedisFaults(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	tok := e.cc(nil)
	rt, _ := e.grant("svc", "alice", "read")
	readyz := func() int { return e.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)).Code }

	e.redis.Kill()
	t.Run("redis down: 503 everywhere, never a token, never active:false, never 200", func(t *testing.T) {
		assertError(t, e.post("/token", cc, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
		assertError(t, e.post("/introspect", url.Values{"token": {tok}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
		assertError(t, e.post("/introspect", url.Values{"token": {rt}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
		assertError(t, e.post("/revoke", url.Values{"token": {tok}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
		assertError(t, e.post("/revoke", url.Values{"token": {rt}}, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", unavailable)
		if code := readyz(); code != 503 {
			t.Fatalf("readyz %d", code)
		}
		if code := e.do(httptest.NewRequest(http.MethodGet, "/healthz", nil)).Code; code != 200 {
			t.Fatalf("healthz %d: liveness must not depend on Redis", code)
		}
	})

	e.redis.Restart()
	t.Run("restarted: recovers by itself", func(t *testing.T) {
		eventually(t, "readyz after restart", func() bool { return readyz() == 200 })
		eventually(t, "a token after restart", func() bool {
			return e.post("/token", cc, basic("svc", e.svcSecret)).Code == 200
		})
	})
	t.Run("restarted empty: earlier tokens fail closed", func(t *testing.T) {
		e.assertInactive(t, "svc", e.svcSecret, tok)
		e.assertInactive(t, "svc", e.svcSecret, rt)
	})
	t.Run("FLUSHALL: issued tokens are inactive", func(t *testing.T) {
		fresh := e.cc(nil)
		if status, m := e.introspect("svc", e.svcSecret, fresh); status != 200 || m["active"] != true {
			t.Fatalf("before flush: %d %v", status, m)
		}
		if err := e.redis.Client(t).FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		e.assertInactive(t, "svc", e.svcSecret, fresh)
	})
	t.Run("SCRIPT FLUSH: scripts are reloaded", func(t *testing.T) {
		if err := e.redis.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		fresh := e.cc(nil)
		if err := e.redis.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		if status, m := e.introspect("svc", e.svcSecret, fresh); status != 200 || m["active"] != true {
			t.Fatalf("after script flush: %d %v", status, m)
		}
		if err := e.redis.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		if rec := e.post("/revoke", url.Values{"token": {fresh}}, basic("svc", e.svcSecret)); rec.Code != 200 {
			t.Fatalf("revoke after script flush: %d %s", rec.Code, rec.Body)
		}
		e.assertInactive(t, "svc", e.svcSecret, fresh)
	})
}

// Case 72, 88 and decision D6, seen from the token endpoint: which key signs.
func TestSigningKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	kidOf := func() string {
		rec := e.post("/token", cc, basic("svc", e.svcSecret))
		if rec.Code != 200 {
			t.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		var resp struct {
			AccessToken string `json:"access_token"`
		}
		decode(t, rec.Body.Bytes(), &resp)
		h, _ := jwtParts(t, resp.AccessToken)
		return h["kid"].(string)
	}
	first := e.keys.Keys[0].KeyID
	if kid := kidOf(); kid != first {
		t.Fatalf("signed with %s, want %s", kid, first)
	}

	// A Next key in the Secret but not yet published never signs, even inside its window.
	now := e.clk.Now()
	next := e.keys.AddKey(t, now.Add(time.Hour), now.Add(800*time.Hour))
	unpublished := e.keys.ConfigMap.DeepCopy()
	e.keys.Keys = e.keys.Keys[:1]
	e.keys.Publish(t)
	servertest.Update(t, e.reader, e.keys.ConfigMap)
	if err := e.reader.Create(context.Background(), e.keys.Secrets[1]); err != nil {
		t.Fatal(err)
	}
	e.clk.Step(2 * time.Hour)
	if kid := kidOf(); kid != first {
		t.Fatalf("an unpublished key signed (%s)", kid)
	}
	// Published: it signs, as the newest active key.
	servertest.Update(t, e.reader, unpublished)
	if kid := kidOf(); kid != next.KeyID {
		t.Fatalf("signed with %s, want the newer %s", kid, next.KeyID)
	}

	// Case 88: the Active key's Secret is corrupted, then deleted: the last good copy signs.
	var s corev1.Secret
	if err := e.reader.Get(context.Background(), client.ObjectKeyFromObject(e.keys.Secrets[1]), &s); err != nil {
		t.Fatal(err)
	}
	s.Data[latchkeyv1.KeyDataPrivateKey] = []byte("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
	servertest.Update(t, e.reader, &s)
	if kid := kidOf(); kid != next.KeyID {
		t.Fatalf("after corruption signed with %s", kid)
	}
	if err := e.reader.Delete(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
	if kid := kidOf(); kid != next.KeyID {
		t.Fatalf("after deletion signed with %s", kid)
	}

	// Case 72: revoking it stops it at once; the remaining key takes over.
	var sk latchkeyv1.SigningKey
	if err := e.reader.Get(context.Background(), client.ObjectKeyFromObject(e.keys.SigningKey), &sk); err != nil {
		t.Fatal(err)
	}
	sk.Spec.RevokedKeyIDs = []string{next.KeyID}
	servertest.Update(t, e.reader, &sk)
	if kid := kidOf(); kid != first {
		t.Fatalf("after revocation signed with %s, want %s", kid, first)
	}
	// Every key revoked: 503, never an unsigned or unrecorded token.
	sk.Spec.RevokedKeyIDs = []string{next.KeyID, first}
	servertest.Update(t, e.reader, &sk)
	assertError(t, e.post("/token", cc, basic("svc", e.svcSecret)), 503, "temporarily_unavailable", "no signing key is available, retry later")
}

// No SigningKey at all: 503, and the JWKS is an empty set.
func TestNoSigningKey(t *testing.T) {
	e := newEnv(t, withoutKeys())
	assertError(t, e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)),
		503, "temporarily_unavailable", "no signing key is available, retry later")
	rec := e.do(httptest.NewRequest(http.MethodGet, "/jwks", nil))
	assertJSON(t, rec.Body.Bytes(), `{"keys":[]}`)
	// A key Secret that was never valid does not sign either.
	ks := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, e.clk.Now())
	ks.Secrets[0].Data[latchkeyv1.KeyDataKeyID] = []byte("not-the-thumbprint")
	for _, o := range ks.Objects() {
		if err := e.reader.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	assertError(t, e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)),
		503, "temporarily_unavailable", "no signing key is available, retry later")
}
