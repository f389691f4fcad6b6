package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	tok := e.cc(nil)
	e.post("/token", cc, basic("svc", "wrong"))
	e.post("/token", url.Values{"grant_type": {"password"}}, basic("svc", e.svcSecret))
	e.post("/revoke", url.Values{"token": {tok}}, basic("svc", e.svcSecret))
	e.do(httptest.NewRequest(http.MethodGet, "/jwks", nil))

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"latchkey_server_requests_total", map[string]string{"endpoint": "token", "grant": "client_credentials", "outcome": "ok"}, 1},
		{"latchkey_server_requests_total", map[string]string{"endpoint": "token", "grant": "", "outcome": "invalid_client"}, 1},
		{"latchkey_server_requests_total", map[string]string{"endpoint": "token", "grant": "unsupported", "outcome": "unsupported_grant_type"}, 1},
		{"latchkey_server_requests_total", map[string]string{"endpoint": "revoke", "outcome": "ok"}, 1},
		{"latchkey_server_requests_total", map[string]string{"endpoint": "jwks", "outcome": "ok"}, 1},
		{"latchkey_server_request_duration_seconds", map[string]string{"endpoint": "token"}, 3},
		{"latchkey_server_tokens_issued_total", map[string]string{"grant": "client_credentials"}, 1},
		{"latchkey_server_tokens_revoked_total", map[string]string{"token_type": "access_token"}, 1},
	} {
		if got := metricValue(t, e, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// A second server on the same registry (a --dev restart, tests) shares the collectors.
func TestMetricsRegisterTwice(t *testing.T) {
	e := newEnv(t)
	_, err := server.New(server.Options{Issuer: servertest.Issuer, Namespace: servertest.Namespace,
		Reader: e.reader, Store: e.store, Registerer: e.reg})
	if err != nil {
		t.Fatalf("second server on one registry: %v", err)
	}
}
