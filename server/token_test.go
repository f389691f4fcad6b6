package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// Case 53, 29, 30: the client_credentials response and the token it carries.
func TestClientCredentialsIssuesRFC9068Token(t *testing.T) {
	e := newEnv(t)
	rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	assertNoStore(t, rec)
	var resp map[string]any
	decode(t, rec.Body.Bytes(), &resp)
	tok, _ := resp["access_token"].(string)
	e.logs.forbid(tok)
	delete(resp, "access_token")
	b, _ := json.Marshal(resp)
	// No refresh_token (RFC 6749 §4.4.3); scope defaults to the registered scopes.
	assertJSON(t, b, `{"token_type":"Bearer","expires_in":900,"scope":"read write"}`)

	h, c := jwtParts(t, tok)
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != e.keys.Keys[0].KeyID {
		t.Fatalf("header = %v", h)
	}
	for _, forbidden := range []string{"jku", "jwk", "x5u", "x5c", "crit"} {
		if _, ok := h[forbidden]; ok {
			t.Fatalf("header has %s", forbidden)
		}
	}
	jti, _ := c["jti"].(string)
	if len(jti) < 22 {
		t.Fatalf("jti %q shorter than 128 bits", jti)
	}
	delete(c, "jti")
	now := servertest.Epoch.Unix()
	want := fmt.Sprintf(`{"iss":%q,"sub":"client:svc","aud":%q,"exp":%d,"iat":%d,"client_id":"svc","scope":"read write"}`,
		servertest.Issuer, servertest.Audience, now+900, now)
	cb, _ := json.Marshal(c)
	assertJSON(t, cb, want)
}

func TestClientCredentialsScopeAndAudience(t *testing.T) {
	multi, multiSecret := servertest.ConfidentialClient("multi", "apps", servertest.WithClientID("multi"),
		servertest.WithAudiences("https://a.example.test", "https://b.example.test"),
		servertest.WithAuthMethod(latchkeyv1.AuthMethodClientSecretPost))
	noAud, noAudSecret := servertest.ConfidentialClient("noaud", "apps", servertest.WithClientID("noaud"),
		servertest.WithAudiences(), servertest.WithAccessTokenLifetime(5*time.Minute))
	e := newEnv(t, withObjects(multi, multiSecret, noAud, noAudSecret))

	t.Run("a narrower scope is granted as asked", func(t *testing.T) {
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"write read write"}}, basic("svc", e.svcSecret))
		var resp struct{ Scope string }
		decode(t, rec.Body.Bytes(), &resp)
		if resp.Scope != "read write" {
			t.Fatalf("scope %q", resp.Scope)
		}
		rec = e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, basic("svc", e.svcSecret))
		decode(t, rec.Body.Bytes(), &resp)
		if resp.Scope != "read" {
			t.Fatalf("scope %q", resp.Scope)
		}
	})
	t.Run("an empty scope parameter counts as absent", func(t *testing.T) {
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {""}}, basic("svc", e.svcSecret))
		var resp struct{ Scope string }
		decode(t, rec.Body.Bytes(), &resp)
		if rec.Code != 200 || resp.Scope != "read write" {
			t.Fatalf("%d scope %q", rec.Code, resp.Scope)
		}
	})
	t.Run("several audiences are an array, client_secret_post works", func(t *testing.T) {
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"multi"},
			"client_secret": {servertest.SecretOf(multiSecret)}})
		var resp struct {
			AccessToken string `json:"access_token"`
		}
		decode(t, rec.Body.Bytes(), &resp)
		_, c := jwtParts(t, resp.AccessToken)
		b, _ := json.Marshal(c["aud"])
		if string(b) != `["https://a.example.test","https://b.example.test"]` {
			t.Fatalf("aud %s", b)
		}
	})
	t.Run("no audiences means the client_id, lifetime follows the client", func(t *testing.T) {
		rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("noaud", servertest.SecretOf(noAudSecret)))
		var resp struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		decode(t, rec.Body.Bytes(), &resp)
		_, c := jwtParts(t, resp.AccessToken)
		if c["aud"] != "noaud" || resp.ExpiresIn != 300 {
			t.Fatalf("aud %v expires_in %d", c["aud"], resp.ExpiresIn)
		}
	})
}

// Case 28, 43, 93, 95 and the general rules of the token endpoint.
func TestTokenEndpointErrors(t *testing.T) {
	public := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"))
	publicCC := servertest.PublicClient("spacc", "apps", servertest.WithClientID("spacc"),
		servertest.WithGrants(latchkeyv1.GrantClientCredentials))
	codeOnly, codeOnlySecret := servertest.ConfidentialClient("web", "apps", servertest.WithClientID("web"),
		servertest.WithGrants(latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken),
		servertest.WithRedirectURIs("https://web.example.test/cb"))
	invalid, invalidSecret := servertest.ConfidentialClient("bad", "apps", servertest.WithClientID("bad"),
		servertest.NotReady(latchkeyv1.ReasonInvalidSpec))
	e := newEnv(t, withObjects(public, publicCC, codeOnly, codeOnlySecret, invalid, invalidSecret))
	ok := basic("svc", e.svcSecret)
	cc := url.Values{"grant_type": {"client_credentials"}}
	const failed = "client authentication failed"

	cases := []struct {
		name   string
		req    func() *httptest.ResponseRecorder
		status int
		code   string
		desc   string
	}{
		{"grant_type missing", func() *httptest.ResponseRecorder { return e.post("/token", url.Values{}, ok) },
			400, "invalid_request", "grant_type is required"},
		{"password grant", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, ok)
		}, 400, "unsupported_grant_type", "grant_type is not supported"},
		{"implicit grant", func() *httptest.ResponseRecorder { return e.post("/token", url.Values{"grant_type": {"implicit"}}, ok) },
			400, "unsupported_grant_type", "grant_type is not supported"},
		{"device code grant", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}}, ok)
		}, 400, "unsupported_grant_type", "grant_type is not supported"},
		{"unknown grant", func() *httptest.ResponseRecorder { return e.post("/token", url.Values{"grant_type": {"foo"}}, ok) },
			400, "unsupported_grant_type", "grant_type is not supported"},
		{"grant not in spec.grantTypes", func() *httptest.ResponseRecorder {
			return e.post("/token", cc, basic("web", servertest.SecretOf(codeOnlySecret)))
		}, 400, "unauthorized_client", "the client may not use this grant_type"},
		{"client_credentials from a public client", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}})
		}, 400, "unauthorized_client", "the client may not use this grant_type"},
		{"client_credentials from a public client that lists it", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"spacc"}})
		}, 400, "unauthorized_client", "client_credentials needs a confidential client"},
		{"scope beyond spec.scopes", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read admin"}}, ok)
		}, 400, "invalid_scope", "the requested scope exceeds what the client may request"},
		{"scope with a control character", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read\nwrite"}}, ok)
		}, 400, "invalid_scope", "scope is malformed"},
		{"scope with a double space", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"read  write"}}, ok)
		}, 400, "invalid_scope", "scope is malformed"},
		{"scope with a quote", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {`read"`}}, ok)
		}, 400, "invalid_scope", "scope is malformed"},
		{"wrong secret via Basic", func() *httptest.ResponseRecorder { return e.post("/token", cc, basic("svc", "wrong")) },
			401, "invalid_client", failed},
		{"wrong secret in the body", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"wrong"}})
		}, 401, "invalid_client", failed},
		{"right secret in the body for a Basic client", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {e.svcSecret}})
		}, 401, "invalid_client", failed},
		{"unknown client via Basic", func() *httptest.ResponseRecorder { return e.post("/token", cc, basic("nobody", "x")) },
			401, "invalid_client", failed},
		{"unknown client in the body", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"x"}})
		}, 401, "invalid_client", failed},
		{"client that is not Ready", func() *httptest.ResponseRecorder {
			return e.post("/token", cc, basic("bad", servertest.SecretOf(invalidSecret)))
		}, 401, "invalid_client", failed},
		{"no authentication at all", func() *httptest.ResponseRecorder { return e.post("/token", cc) },
			401, "invalid_client", failed},
		{"confidential client without credentials", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}})
		}, 401, "invalid_client", failed},
		{"public client sending a secret", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}, "client_secret": {"x"}})
		}, 401, "invalid_client", failed},
		{"Bearer instead of Basic", func() *httptest.ResponseRecorder { return e.post("/token", cc, header("Authorization", "Bearer abc")) },
			401, "invalid_client", failed},
		{"malformed Basic", func() *httptest.ResponseRecorder { return e.post("/token", cc, header("Authorization", "Basic !!!")) },
			401, "invalid_client", failed},
		{"two authentication methods", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_secret": {e.svcSecret}}, ok)
		}, 400, "invalid_request", "more than one client authentication method"},
		{"Basic and an assertion", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_assertion": {"a.b.c"}}, ok)
		}, 400, "invalid_request", "more than one client authentication method"},
		{"body client_id differs from Basic", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"other"}}, ok)
		}, 400, "invalid_request", "client_id does not match the authenticated client"},
		{"repeated parameter", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, ok)
		}, 400, "invalid_request", "parameter repeated: grant_type"},
		{"repeated empty parameter", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"", "read"}}, ok)
		}, 400, "invalid_request", "parameter repeated: scope"},
		{"parameters in the query", func() *httptest.ResponseRecorder {
			return e.post("/token?grant_type=client_credentials", url.Values{"grant_type": {"client_credentials"}}, ok)
		}, 400, "invalid_request", "parameters must be sent in the body, not the URL query"},
		{"JSON body", func() *httptest.ResponseRecorder {
			return e.post("/token", cc, ok, header("Content-Type", "application/json"))
		}, 400, "invalid_request", "content type must be application/x-www-form-urlencoded"},
		{"no content type", func() *httptest.ResponseRecorder {
			return e.post("/token", cc, ok, func(r *http.Request) { r.Header.Del("Content-Type") })
		}, 400, "invalid_request", "content type must be application/x-www-form-urlencoded"},
		{"bad percent-encoding", func() *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials&scope=%zz"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			ok(req)
			return e.do(req)
		}, 400, "invalid_request", "malformed form body: scope"},
		{"body over 64 KiB", func() *httptest.ResponseRecorder {
			return e.post("/token", url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("a", 70<<10)}}, ok)
		}, 400, "invalid_request", "request body too large"},
		{"body over 64 KiB without Content-Length", func() *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials&pad="+strings.Repeat("a", 70<<10)))
			req.ContentLength = -1
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			ok(req)
			return e.do(req)
		}, 400, "invalid_request", "request body too large"},
		{"10 001 parameters", func() *httptest.ResponseRecorder {
			var b strings.Builder
			b.WriteString("grant_type=client_credentials")
			b.WriteString(strings.Repeat("&p", 10000))
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(b.String()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			ok(req)
			return e.do(req)
		}, 400, "invalid_request", "too many parameters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.req()
			assertError(t, rec, tc.status, tc.code, tc.desc)
			if tc.code == "invalid_client" {
				if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="https://auth.example.test", charset="UTF-8"` {
					t.Fatalf("WWW-Authenticate = %q", got)
				}
			}
		})
	}
}

// Case 95: other methods on the POST endpoints.
func TestPostOnlyEndpoints(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/token", "/introspect", "/revoke"} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
			t.Run(method+" "+path, func(t *testing.T) {
				rec := e.do(httptest.NewRequest(method, path+"?grant_type=client_credentials", nil))
				if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
					t.Fatalf("%d Allow %q", rec.Code, rec.Header().Get("Allow"))
				}
				if method != http.MethodHead {
					assertJSON(t, rec.Body.Bytes(), `{"error":"invalid_request","error_description":"method not allowed; use POST"}`)
				}
				assertNoStore(t, rec)
			})
		}
	}
}

// Case 43 and RFC 6749 Appendix B: Basic credentials are form-encoded before base64.
func TestBasicCredentialsAreFormDecoded(t *testing.T) {
	odd, oddSecret := servertest.ConfidentialClient("odd", "apps", servertest.WithClientID("odd:id~x"))
	oddSecret.Data[latchkeyv1.ClientSecretDataClientSecret] = []byte("p@ss w+rd%:é")
	e := newEnv(t, withObjects(odd, oddSecret))
	e.logs.forbid("p@ss w+rd%:é")
	cc := url.Values{"grant_type": {"client_credentials"}}
	if rec := e.post("/token", cc, basic("odd:id~x", "p@ss w+rd%:é")); rec.Code != 200 {
		t.Fatalf("form-encoded Basic: %d %s", rec.Code, rec.Body)
	}
	// Plain (not form-encoded) Basic of a secret with '+' decodes '+' to a space: refused.
	raw := "Basic " + base64Std("odd:id~x:p@ss w+rd%:é")
	if rec := e.post("/token", cc, header("Authorization", raw)); rec.Code != 401 {
		t.Fatalf("raw Basic: %d %s", rec.Code, rec.Body)
	}
	// The scheme name is case-insensitive.
	lower := "basic " + strings.TrimPrefix(basicHeader("svc", e.svcSecret), "Basic ")
	if rec := e.post("/token", cc, header("Authorization", lower)); rec.Code != 200 {
		t.Fatalf("lower-case scheme: %d %s", rec.Code, rec.Body)
	}
}

// Case 47: the previous secret works during its grace period, then 401.
func TestPreviousSecretGracePeriod(t *testing.T) {
	rot, rotSecret := servertest.ConfidentialClient("rot", "apps", servertest.WithClientID("rot"))
	old := servertest.RandomSecret()
	rotSecret.Data[latchkeyv1.ClientSecretDataPreviousSecret] = []byte(old)
	rotSecret.Data[latchkeyv1.ClientSecretDataPreviousExpiresAt] = []byte(servertest.Epoch.Add(time.Hour).Format(time.RFC3339))
	// A previous secret without a parseable expiry is never accepted (fail closed).
	noExp, noExpSecret := servertest.ConfidentialClient("noexp", "apps", servertest.WithClientID("noexp"))
	noExpSecret.Data[latchkeyv1.ClientSecretDataPreviousSecret] = []byte(old)
	e := newEnv(t, withObjects(rot, rotSecret, noExp, noExpSecret))
	cc := url.Values{"grant_type": {"client_credentials"}}

	if rec := e.post("/token", cc, basic("rot", servertest.SecretOf(rotSecret))); rec.Code != 200 {
		t.Fatalf("current secret: %d", rec.Code)
	}
	if rec := e.post("/token", cc, basic("rot", old)); rec.Code != 200 {
		t.Fatalf("previous secret within grace: %d", rec.Code)
	}
	if rec := e.post("/token", cc, basic("noexp", old)); rec.Code != 401 {
		t.Fatalf("previous secret without expiry: %d", rec.Code)
	}
	e.clk.Step(time.Hour)
	assertError(t, e.post("/token", cc, basic("rot", old)), 401, "invalid_client", "client authentication failed")
	if rec := e.post("/token", cc, basic("rot", servertest.SecretOf(rotSecret))); rec.Code != 200 {
		t.Fatalf("current secret after grace: %d", rec.Code)
	}
}

// Case 87: when two OAuthClients claim one clientID, the oldest Ready one is served.
func TestClientIDConflictOldestWins(t *testing.T) {
	first, firstSecret := servertest.ConfidentialClient("first", "team-a", servertest.WithClientID("shared"))
	second, secondSecret := servertest.ConfidentialClient("second", "team-b", servertest.WithClientID("shared"))
	e := newEnv(t, withObjects(second, secondSecret, first, firstSecret))
	cc := url.Values{"grant_type": {"client_credentials"}}
	if rec := e.post("/token", cc, basic("shared", servertest.SecretOf(firstSecret))); rec.Code != 200 {
		t.Fatalf("oldest client: %d", rec.Code)
	}
	if rec := e.post("/token", cc, basic("shared", servertest.SecretOf(secondSecret))); rec.Code != 401 {
		t.Fatalf("younger client: %d", rec.Code)
	}
	// The controller marks the younger one ClientIDConflict; the older keeps working. If the
	// older stops being Ready, the younger (if Ready) is served.
	servertest.SetReady(first, metav1.ConditionFalse, latchkeyv1.ReasonInvalidSpec)
	servertest.Update(t, e.reader, first)
	if rec := e.post("/token", cc, basic("shared", servertest.SecretOf(secondSecret))); rec.Code != 200 {
		t.Fatalf("younger client once the older is not Ready: %d\n%s", rec.Code, e.logs.text())
	}
}

// Case 85, 91: before the cache syncs every lookup is 503, never invalid_client; a deleted
// client Secret is invalid_client, never 500.
func TestCacheNotSyncedAndMissingSecret(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	e.setSynced(false)
	for _, creds := range []func(*http.Request){basic("svc", e.svcSecret), basic("nobody", "x")} {
		assertError(t, e.post("/token", cc, creds), 503, "temporarily_unavailable", "the client registry is not ready yet, retry later")
	}
	if rec := e.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != 503 {
		t.Fatalf("readyz before sync: %d", rec.Code)
	}
	e.setSynced(true)
	if rec := e.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != 200 {
		t.Fatalf("readyz after sync: %d %s", rec.Code, rec.Body)
	}
	if rec := e.post("/token", cc, basic("svc", e.svcSecret)); rec.Code != 200 {
		t.Fatalf("after sync: %d", rec.Code)
	}
	var s = servertest.ClientSecret(e.svc, "")
	if err := e.reader.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	assertError(t, e.post("/token", cc, basic("svc", e.svcSecret)), 401, "invalid_client", "client authentication failed")
}

// Case 97: a panic or an unexpected error is 500 server_error JSON, no-store, no details.
// (The panic itself is driven in the internal test of recoverPanic.)

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func basicHeader(id, secret string) string { return clients.EncodeBasic(id, secret) }

// Many concurrent requests: every one gets its own recorded token.
func TestConcurrentClientCredentials(t *testing.T) {
	e := newEnv(t)
	const n = 40
	tokens := make(chan string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", basicHeader("svc", e.svcSecret))
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			var resp struct {
				AccessToken string `json:"access_token"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
			tokens <- resp.AccessToken
		}()
	}
	wg.Wait()
	close(tokens)
	jtis := map[string]bool{}
	for tok := range tokens {
		if tok == "" {
			t.Fatal("a request got no token")
		}
		e.logs.forbid(tok)
		_, c := jwtParts(t, tok)
		jti := c["jti"].(string)
		if jtis[jti] {
			t.Fatal("duplicate jti")
		}
		jtis[jti] = true
		if status, m := e.introspect("svc", e.svcSecret, tok); status != 200 || m["active"] != true {
			t.Fatalf("token not recorded: %d %v", status, m)
		}
	}
}
