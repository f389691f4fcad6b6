package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// BenchmarkClientCredentials is the whole client_credentials path: the HTTP handler with its
// middleware, form parsing, client lookup in the cache, Basic authentication, scope, signing
// with ES256, and recording the token in a real Redis. The objects come from a Reader that
// implements revision.Source (revision-memo, as --dev serves them: the client, its secret's
// digest and the signer are kept while nothing changes) and from one that does not
// (read-per-request: every request reads and deep-copies the OAuthClient, its Secret, the
// SigningKey, its ConfigMap and its key Secrets).
func BenchmarkClientCredentials(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(client.WithWatch) client.Reader
	}{
		{"revision-memo", func(c client.WithWatch) client.Reader { return revision.NewClient(c) }},
		{"read-per-request", func(c client.WithWatch) client.Reader { return c }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			keys := servertest.NewSigningKey(b, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, time.Now())
			svc, svcSecret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"), servertest.WithRateLimit(0, 0))
			st, _ := servertest.RedisStore(b)
			srv, err := server.New(server.Options{
				Issuer:    servertest.Issuer,
				Namespace: servertest.Namespace,
				Reader:    tc.wrap(servertest.NewReader(append(keys.Objects(), svc, svcSecret)...)),
				Store:     st,
				Clock:     clock.RealClock{},
			})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			auth := clients.EncodeBasic("svc", servertest.SecretOf(svcSecret))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials&scope=read"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", auth)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkRawES256Sign is go-jose signing a payload like an access token's, with a signer
// built once: the floor under BenchmarkClientCredentials.
func BenchmarkRawES256Sign(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "kid"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Unix()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		payload, _ := json.Marshal(map[string]any{
			"iss": servertest.Issuer, "sub": "client:svc", "aud": servertest.Audience, "exp": now + 900,
			"iat": now, "jti": tokenid.NewJTI(""), "client_id": "svc", "scope": "read",
		})
		jws, err := signer.Sign(payload)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
}
