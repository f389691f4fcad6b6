package verifier_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/verifier"
)

func TestNewRefusesUnsafeConfiguration(t *testing.T) {
	iss := newTestIssuer(t, testKey(t, "ES256"))
	base := func(opts ...verifier.Option) []verifier.Option {
		return append([]verifier.Option{verifier.WithAudience(testAudience), verifier.WithHTTPClient(iss.srv.Client())}, opts...)
	}
	cases := []struct {
		name   string
		issuer string
		opts   []verifier.Option
	}{
		{"no audience", iss.URL, []verifier.Option{verifier.WithHTTPClient(iss.srv.Client())}},
		{"an empty audience", iss.URL, base(verifier.WithAudience(""))},
		{"an issuer with a query", iss.URL + "?tenant=a", base()},
		{"an issuer with a fragment", iss.URL + "#x", base()},
		{"an issuer with user info", strings.Replace(iss.URL, "http://", "http://u:p@", 1), base()},
		{"an issuer that is not http(s)", "ftp://auth.example", base()},
		{"a relative issuer", "/auth", base()},
		{"an empty issuer", "", base()},
		{"refresh bounds below a second", iss.URL, base(verifier.WithJWKSRefresh(time.Millisecond, time.Hour))},
		{"refresh bounds above a day", iss.URL, base(verifier.WithJWKSRefresh(time.Minute, 48*time.Hour))},
		{"inverted refresh bounds", iss.URL, base(verifier.WithJWKSRefresh(time.Hour, time.Minute))},
		{"an introspection cache TTL too long", iss.URL, base(verifier.WithIntrospection("", "c", "s", time.Hour))},
		{"a negative introspection cache TTL", iss.URL, base(verifier.WithIntrospection("", "c", "s", -time.Second))},
		{"introspection without credentials", iss.URL, base(verifier.WithIntrospection("", "", "", 0))},
		{"a relative introspection endpoint", iss.URL, base(verifier.WithIntrospection("/introspect", "c", "s", 0))},
	}
	for _, tc := range cases {
		t.Run("New refuses "+tc.name, func(t *testing.T) {
			if _, err := verifier.New(t.Context(), tc.issuer, tc.opts...); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestNewDiscovery(t *testing.T) {
	es := testKey(t, "ES256")
	for _, tc := range []struct {
		name     string
		metadata map[string]any
	}{
		{"a metadata issuer with a trailing slash", map[string]any{"issuer": "%s/"}},
		{"a metadata issuer in another case", map[string]any{"issuer": "HTTP://127.0.0.1"}},
		{"a metadata document for another issuer", map[string]any{"issuer": "https://evil.example"}},
		{"metadata without issuer", map[string]any{"issuer": nil}},
		{"metadata without jwks_uri", map[string]any{"jwks_uri": nil}},
		{"a relative jwks_uri", map[string]any{"jwks_uri": "/jwks"}},
		{"a jwks_uri that is not http(s)", map[string]any{"jwks_uri": "file:///etc/passwd"}},
	} {
		t.Run("New refuses "+tc.name, func(t *testing.T) {
			iss := newTestIssuer(t, es)
			for k, v := range tc.metadata {
				if s, ok := v.(string); ok && strings.Contains(s, "%s") {
					v = strings.Replace(s, "%s", iss.URL, 1)
				}
				iss.SetMetadata(k, v)
			}
			if _, err := verifier.New(t.Context(), iss.URL, verifier.WithAudience(testAudience), verifier.WithHTTPClient(iss.srv.Client())); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
	t.Run("New refuses an issuer whose configured form has a trailing slash the metadata lacks", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		if _, err := verifier.New(t.Context(), iss.URL+"/", verifier.WithAudience(testAudience), verifier.WithHTTPClient(iss.srv.Client())); err == nil {
			t.Fatal("New succeeded")
		}
	})
	t.Run("New fails when the JWKS cannot be fetched", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		iss.SetJWKSStatus(http.StatusNotFound)
		if _, err := verifier.New(t.Context(), iss.URL, verifier.WithAudience(testAudience), verifier.WithHTTPClient(iss.srv.Client())); err == nil {
			t.Fatal("New succeeded")
		}
	})
	t.Run("New fails when discovery redirects elsewhere", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		redir := httptest.NewServer(http.RedirectHandler(iss.URL+"/.well-known/oauth-authorization-server", http.StatusFound))
		t.Cleanup(redir.Close)
		if _, err := verifier.New(t.Context(), redir.URL, verifier.WithAudience(testAudience)); err == nil {
			t.Fatal("New followed a redirect to another issuer's metadata")
		}
	})
	t.Run("an issuer with a path is discovered at the RFC 8414 location", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		mux := http.NewServeMux()
		var issuer string
		mux.HandleFunc("GET /.well-known/oauth-authorization-server/tenant-a", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"` + issuer + `","jwks_uri":"` + iss.URL + `/jwks"}`))
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		issuer = srv.URL + "/tenant-a"
		clk := newClock()
		v, err := verifier.New(t.Context(), issuer, verifier.WithAudience(testAudience), verifier.WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		acceptToken(t, v, mint(t, es, with(iss.claims(), map[string]any{"iss": issuer}), nil))
		if v.Issuer() != issuer || v.Audience() != testAudience {
			t.Fatalf("Issuer() = %q, Audience() = %q", v.Issuer(), v.Audience())
		}
	})
	t.Run("an issuer with a path is also found at the appended location", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		mux := http.NewServeMux()
		var issuer string
		mux.HandleFunc("GET /tenant-b/.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"issuer":"` + issuer + `","jwks_uri":"` + iss.URL + `/jwks"}`))
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		issuer = srv.URL + "/tenant-b"
		if _, err := verifier.New(t.Context(), issuer, verifier.WithAudience(testAudience)); err != nil {
			t.Fatal(err)
		}
	})
}
