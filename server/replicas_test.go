package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// Case 71 and 84 at the token server: three replicas read one cache and one Redis, with clocks
// 2 s apart. Through a rotation (the Active key retires as the pre-published Next key activates)
// every token any replica issues verifies against the JWKS every other replica serves at that
// instant, introspects active at every replica, and no replica ever goes back to the old key.
// A key that is in a Secret but not yet in the JWKS ConfigMap signs on no replica.
func TestThreeReplicasAgreeAcrossRotation(t *testing.T) {
	e := newEnv(t)
	old := e.keys.Keys[0]
	boundary := e.clk.Now().Add(10 * time.Minute)
	e.keys.Secrets[0].Annotations = keymaterial.Timeline{CreatedAt: e.clk.Now().Add(-2 * time.Hour),
		ActivatesAt: e.clk.Now().Add(-time.Hour), RetiresAt: boundary}.Annotations()
	servertest.Update(t, e.reader, e.keys.Secrets[0])

	// The Next key exists but is not published yet.
	next := e.keys.AddKey(t, boundary, boundary.Add(720*time.Hour))
	published := e.keys.ConfigMap.DeepCopy()
	e.keys.Keys = e.keys.Keys[:1]
	e.keys.Publish(t)
	servertest.Update(t, e.reader, e.keys.ConfigMap)
	if err := e.reader.Create(ctx(), e.keys.Secrets[1]); err != nil {
		t.Fatal(err)
	}

	type replica struct {
		clk *clocktesting.FakeClock
		h   http.Handler
	}
	replicas := []replica{{e.clk, e.h}}
	for _, skew := range []time.Duration{-2 * time.Second, 2 * time.Second} {
		clk := clocktesting.NewFakeClock(e.clk.Now().Add(skew))
		srv, err := server.New(server.Options{
			Issuer: servertest.Issuer, Namespace: servertest.Namespace, Reader: e.reader, Store: e.store,
			Clock: clk, Log: logr.Discard(), Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, replica{clk, srv.Handler()})
	}
	do := func(r replica, req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		return rec
	}
	mint := func(r replica) string {
		rec := do(r, formReq("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)))
		if rec.Code != http.StatusOK {
			t.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		var resp struct {
			AccessToken string `json:"access_token"`
		}
		decode(t, rec.Body.Bytes(), &resp)
		e.logs.forbid(resp.AccessToken)
		return resp.AccessToken
	}
	jwks := func(r replica) *jose.JSONWebKeySet {
		var set jose.JSONWebKeySet
		decode(t, do(r, httptest.NewRequest(http.MethodGet, "/jwks", nil)).Body.Bytes(), &set)
		return &set
	}
	step := func(d time.Duration) {
		for _, r := range replicas {
			r.clk.Step(d)
		}
	}
	check := func(when string, wantKids map[string]bool) []string {
		t.Helper()
		var kids []string
		for i, r := range replicas {
			tok := mint(r)
			hdr, _ := jwtParts(t, tok)
			kid, _ := hdr["kid"].(string)
			if !wantKids[kid] {
				t.Fatalf("%s: replica %d signed with %s", when, i, kid)
			}
			kids = append(kids, kid)
			for j, other := range replicas {
				keys := jwks(other).Key(kid)
				if len(keys) != 1 {
					t.Fatalf("%s: replica %d's kid %s is not in replica %d's JWKS", when, i, kid, j)
				}
				jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := jws.Verify(keys[0].Key); err != nil {
					t.Fatalf("%s: replica %d's token does not verify with replica %d's JWKS: %v", when, i, j, err)
				}
				rec := do(other, formReq("/introspect", url.Values{"token": {tok}}, basic("svc", e.svcSecret)))
				var m map[string]any
				decode(t, rec.Body.Bytes(), &m)
				if rec.Code != http.StatusOK || m["active"] != true {
					t.Fatalf("%s: replica %d's token at replica %d: %d %v", when, i, j, rec.Code, m)
				}
			}
		}
		return kids
	}

	// Past the boundary with the Next key unpublished: no replica signs with it. The old key's
	// window has ended, so the replicas past the boundary have no key at all (503), never the
	// unpublished one.
	step(10*time.Minute + 5*time.Second)
	for i, r := range replicas {
		rec := do(r, formReq("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)))
		if rec.Code == http.StatusOK {
			hdr, _ := jwtParts(t, decodeToken(t, rec))
			if hdr["kid"] == next.KeyID {
				t.Fatalf("replica %d signed with the unpublished key", i)
			}
		} else if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("replica %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	// Back before the boundary, the controller publishes it (pre-publication).
	step(-(10*time.Minute + 5*time.Second))
	servertest.Update(t, e.reader, published)

	seen := make([]string, len(replicas))
	both := map[string]bool{old.KeyID: true, next.KeyID: true}
	for s := -5; s <= 5; s++ {
		at := boundary.Add(time.Duration(s) * time.Second)
		step(at.Sub(e.clk.Now()))
		kids := check(at.Format(time.TimeOnly), both)
		if s == -1 && (kids[1] != old.KeyID || kids[2] != next.KeyID) {
			// One second before the boundary, the replica 2 s ahead has switched and the one
			// 2 s behind has not: the skew was really exercised.
			t.Fatalf("kids %v one second before the boundary", kids)
		}
		for i, kid := range kids {
			if seen[i] == next.KeyID && kid == old.KeyID {
				t.Fatalf("replica %d went back to the old key at %s", i, at)
			}
			seen[i] = kid
		}
	}
	for i, kid := range seen {
		if kid != next.KeyID {
			t.Fatalf("replica %d still signs with %s after the boundary", i, kid)
		}
	}
	// The retired key stays published (it verifies tokens until they expire); dropping it is the
	// controller's job at expiresAt (TestSigningKeyExpiry).
	for j, r := range replicas {
		if len(jwks(r).Key(old.KeyID)) != 1 {
			t.Fatalf("replica %d dropped the retired key", j)
		}
	}
}

// formReq builds a form POST to path with edits.
func formReq(path string, form url.Values, edits ...func(*http.Request)) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, edit := range edits {
		edit(req)
	}
	return req
}

// decodeToken returns the access token of a successful token response.
func decodeToken(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	decode(t, rec.Body.Bytes(), &resp)
	return resp.AccessToken
}
