package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// A real OAuth client library gets a token over HTTP, and the token verifies against /jwks.
func TestClientCredentialsEndToEnd(t *testing.T) {
	e := newEnv(t)
	ts := httptest.NewServer(e.h)
	t.Cleanup(ts.Close)

	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		if style == oauth2.AuthStyleInParams {
			// client_secret_post needs a client registered for it.
			var c = e.svc.DeepCopy()
			c.Spec.TokenEndpointAuthMethod = "client_secret_post"
			servertest.Update(t, e.reader, c)
		}
		cfg := clientcredentials.Config{
			ClientID:     "svc",
			ClientSecret: e.svcSecret,
			TokenURL:     ts.URL + "/token",
			Scopes:       []string{"read"},
			AuthStyle:    style,
		}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatalf("auth style %d: %v", style, err)
		}
		e.logs.forbid(tok.AccessToken)
		if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("scope") != "read" {
			t.Fatalf("token %+v", tok)
		}

		resp, err := http.Get(ts.URL + "/jwks")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(tok.AccessToken, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		keys := set.Key(jws.Signatures[0].Header.KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %q not in the JWKS", jws.Signatures[0].Header.KeyID)
		}
		payload, err := jws.Verify(keys[0])
		if err != nil {
			t.Fatalf("verify against /jwks: %v", err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["iss"] != servertest.Issuer || claims["sub"] != "client:svc" || claims["scope"] != "read" {
			t.Fatalf("claims %v", claims)
		}
	}

	if got := metricValue(t, e, "latchkey_server_tokens_issued_total", map[string]string{"grant": "client_credentials"}); got != 2 {
		t.Fatalf("tokens issued = %v", got)
	}
}

// metricValue is the value of the counter name whose labels include labels, 0 when absent.
func metricValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}
