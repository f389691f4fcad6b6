package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/pkce"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// BenchmarkRefreshRotation is one refresh-token rotation through the token endpoint: the
// handler with its middleware, form parsing, the public client's lookup, the users-Secret and
// signing-key checks, one rotation script in a real Redis (which also records the access
// token), the user's re-check and an ES256 signature. Each iteration presents the token the
// previous one returned. Compare it with BenchmarkRawES256Sign from the same run:
//
//	go test -run '^$' -bench 'RefreshRotation|RawES256Sign' ./server/
//
// The openid case signs an ID token too.
func BenchmarkRefreshRotation(b *testing.B) {
	for _, sc := range []string{"read", "openid read"} {
		b.Run(strings.ReplaceAll(sc, " ", "+"), func(b *testing.B) {
			h, rt := refreshBenchServer(b, sc)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/token",
					strings.NewReader("grant_type=refresh_token&client_id=spa&refresh_token="+url.QueryEscape(rt)))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
				var resp struct {
					RefreshToken string `json:"refresh_token"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					b.Fatal(err)
				}
				rt = resp.RefreshToken
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
		})
	}
}

// refreshBenchServer is a server with the spa client and alice, and a first refresh token of a
// grant of scope sc, obtained through a real code exchange.
func refreshBenchServer(b *testing.B, sc string) (http.Handler, string) {
	b.Helper()
	now := time.Now()
	keys := servertest.NewSigningKey(b, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, now)
	spa := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"), servertest.WithRateLimit(0, 0))
	st, _ := servertest.RedisStore(b)
	srv, err := server.New(server.Options{
		Issuer:    servertest.Issuer,
		Namespace: servertest.Namespace,
		// As --dev serves them: objects kept while the store's revision holds.
		Reader: revision.NewClient(servertest.NewReader(append(keys.Objects(), []client.Object{spa, usersSecret()}...)...)),
		Store:  st,
		Clock:  clock.RealClock{},
	})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	family := tokenid.NewFamilyID()
	code, hash := tokenid.NewCode(family)
	p := newPKCE()
	if err := st.CreateCode(context.Background(), family, hash, store.Code{
		Grant:         store.Grant{ClientID: "spa", Subject: "alice", Scope: sc, AuthTime: now},
		CodeChallenge: pkce.S256(p.verifier),
		ExpiresAt:     now.Add(time.Minute),
	}, now); err != nil {
		b.Fatal(err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"spa"}, "code": {code}, "code_verifier": {p.verifier}}
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.RefreshToken == "" {
		b.Fatalf("code exchange: %d %s", rec.Code, rec.Body)
	}
	return h, resp.RefreshToken
}
