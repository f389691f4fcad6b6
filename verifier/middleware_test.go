package verifier_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/verifier"
)

// echo answers 200 with the subject the middleware put in the context.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := verifier.ClaimsFromContext(r.Context())
	if !ok {
		http.Error(w, "no claims", http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, "hello "+c.Subject())
})

type response struct {
	status int
	www    string
	body   string
	header http.Header
}

func serve(h http.Handler, r *http.Request) response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return response{status: rec.Code, www: rec.Header().Get("WWW-Authenticate"), body: rec.Body.String(), header: rec.Header()}
}

func get(target string, auth ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func TestMiddleware(t *testing.T) {
	iss := newTestIssuer(t, testKey(t, "ES256"))
	clk := newClock()
	v := newVerifier(t, iss, clk)
	tok := mint(t, testKey(t, "ES256"), iss.claims(), nil)
	realm := `Bearer realm="` + testAudience + `"`
	h := v.Middleware(echo)

	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		t.Run("the scheme "+scheme+" is accepted", func(t *testing.T) {
			got := serve(h, get("/", scheme+" "+tok))
			if got.status != http.StatusOK || got.body != "hello alice" {
				t.Fatalf("got %d %q", got.status, got.body)
			}
		})
	}
	t.Run("several spaces after the scheme are accepted", func(t *testing.T) {
		if got := serve(h, get("/", "Bearer   "+tok)); got.status != http.StatusOK {
			t.Fatalf("got %d %q", got.status, got.body)
		}
	})

	cases := []struct {
		name   string
		req    *http.Request
		status int
		www    string
		body   string
	}{
		{"no Authorization header is a challenge without an error", get("/"),
			401, realm, `{"error_description":"a bearer token is required"}`},
		{"another scheme is a challenge without an error", get("/", "Basic YWxpY2U6cHc="),
			401, realm, `{"error_description":"a bearer token is required"}`},
		{"two Authorization headers are an invalid request", get("/", "Bearer "+tok, "Bearer "+tok),
			400, realm + `, error="invalid_request", error_description="more than one Authorization header"`,
			`{"error":"invalid_request","error_description":"more than one Authorization header"}`},
		{"a Bearer header without a token is an invalid request", get("/", "Bearer"),
			400, realm + `, error="invalid_request", error_description="the Authorization header is not one bearer token"`,
			`{"error":"invalid_request","error_description":"the Authorization header is not one bearer token"}`},
		{"a Bearer header with two tokens is an invalid request", get("/", "Bearer "+tok+" "+tok),
			400, realm + `, error="invalid_request", error_description="the Authorization header is not one bearer token"`,
			`{"error":"invalid_request","error_description":"the Authorization header is not one bearer token"}`},
		{"a token in the query string is an invalid request", get("/?access_token=" + tok),
			400, realm + `, error="invalid_request", error_description="access tokens in the query string are not accepted"`,
			`{"error":"invalid_request","error_description":"access tokens in the query string are not accepted"}`},
		{"a token in the query string next to a header is an invalid request", get("/?access_token="+tok, "Bearer "+tok),
			400, realm + `, error="invalid_request", error_description="access tokens in the query string are not accepted"`,
			`{"error":"invalid_request","error_description":"access tokens in the query string are not accepted"}`},
		{"a forged token is invalid_token", get("/", "Bearer "+tok[:len(tok)-4]+"AAAA"),
			401, realm + `, error="invalid_token", error_description="the access token is invalid"`,
			`{"error":"invalid_token","error_description":"the access token is invalid"}`},
		{"an expired token is invalid_token saying so", get("/", "Bearer "+mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{"exp": t0.Add(-time.Hour).Unix()}), nil)),
			401, realm + `, error="invalid_token", error_description="the access token expired"`,
			`{"error":"invalid_token","error_description":"the access token expired"}`},
		{"a token for another audience is invalid_token saying so", get("/", "Bearer "+mint(t, testKey(t, "ES256"), with(iss.claims(), map[string]any{"aud": "other"}), nil)),
			401, realm + `, error="invalid_token", error_description="the access token is not meant for this resource"`,
			`{"error":"invalid_token","error_description":"the access token is not meant for this resource"}`},
		{"an 8 MB header is invalid_token", get("/", "Bearer "+strings.Repeat("A", 8<<20)),
			401, realm + `, error="invalid_token", error_description="the access token is invalid"`,
			`{"error":"invalid_token","error_description":"the access token is invalid"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(h, tc.req)
			if got.status != tc.status || got.www != tc.www || got.body != tc.body+"\n" {
				t.Fatalf("got %d\nWWW-Authenticate: %s\n%s\nwant %d\nWWW-Authenticate: %s\n%s", got.status, got.www, got.body, tc.status, tc.www, tc.body)
			}
			if got.header.Get("Content-Type") != "application/json" || got.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", got.header)
			}
		})
	}
}

func TestRequireScopeAndRole(t *testing.T) {
	iss := newTestIssuer(t, testKey(t, "ES256"))
	v := newVerifier(t, iss, newClock())
	user := mint(t, testKey(t, "ES256"), iss.claims(), nil)         // scope "openid notes.read", roles admin,user
	client := mint(t, testKey(t, "ES256"), iss.clientClaims(), nil) // scope "notes.read notes.write", no roles
	realm := `Bearer realm="` + testAudience + `"`

	cases := []struct {
		name    string
		handler http.Handler
		token   string
		status  int
		www     string
		body    string
	}{
		{"a token with the scope passes", v.Middleware(v.RequireScope("notes.read")(echo)), user, 200, "", "hello alice"},
		{"RequireScope authenticates on its own", v.RequireScope("notes.write")(echo), client, 200, "", "hello client:demo-service"},
		{"a token without the scope is insufficient_scope naming it", v.Middleware(v.RequireScope("notes.write")(echo)), user, 403,
			realm + `, error="insufficient_scope", error_description="the access token lacks scope notes.write", scope="notes.write"`,
			`{"error":"insufficient_scope","error_description":"the access token lacks scope notes.write","scope":"notes.write"}` + "\n"},
		{"a scope prefix is not the scope", v.RequireScope("notes")(echo), user, 403,
			realm + `, error="insufficient_scope", error_description="the access token lacks scope notes", scope="notes"`,
			`{"error":"insufficient_scope","error_description":"the access token lacks scope notes","scope":"notes"}` + "\n"},
		{"a user with the role passes", v.RequireRole("admin")(echo), user, 200, "", "hello alice"},
		{"a client token has no roles", v.Middleware(v.RequireRole("admin")(echo)), client, 403,
			realm + `, error="insufficient_scope", error_description="the access token lacks role admin"`,
			`{"error":"insufficient_scope","error_description":"the access token lacks role admin"}` + "\n"},
		{"RequireScope without a token is a challenge", v.RequireScope("notes.read")(echo), "", 401, realm,
			`{"error_description":"a bearer token is required"}` + "\n"},
		{"RequireRole with a bad token is invalid_token", v.RequireRole("admin")(echo), "x.y.z", 401,
			realm + `, error="invalid_token", error_description="the access token is invalid"`,
			`{"error":"invalid_token","error_description":"the access token is invalid"}` + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := get("/")
			if tc.token != "" {
				r = get("/", "Bearer "+tc.token)
			}
			got := serve(tc.handler, r)
			if got.status != tc.status || got.www != tc.www || got.body != tc.body {
				t.Fatalf("got %d\nWWW-Authenticate: %s\n%s\nwant %d\nWWW-Authenticate: %s\n%s", got.status, got.www, got.body, tc.status, tc.www, tc.body)
			}
		})
	}

	t.Run("claims from another verifier are checked again", func(t *testing.T) {
		other := newVerifier(t, iss, newClock(), verifier.WithAudience("https://other.example"))
		h := v.Middleware(other.RequireScope("notes.read")(echo))
		if got := serve(h, get("/", "Bearer "+user)); got.status != http.StatusUnauthorized {
			t.Fatalf("a token for %s passed the other audience's RequireScope: %d", testAudience, got.status)
		}
	})
	t.Run("RequireScope and RequireRole refuse names that cannot be quoted", func(t *testing.T) {
		for _, bad := range []string{"", "a b", `a"b`, `a\b`, "é"} {
			func() {
				defer func() {
					if recover() == nil {
						t.Fatalf("RequireScope(%q) did not panic", bad)
					}
				}()
				v.RequireScope(bad)
			}()
			if bad == "a b" {
				continue // a role may contain a space
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Fatalf("RequireRole(%q) did not panic", bad)
					}
				}()
				v.RequireRole(bad)
			}()
		}
	})
	t.Run("the realm is a quoted string", func(t *testing.T) {
		vr := newVerifier(t, iss, newClock(), verifier.WithRealm(`notes "api"\`))
		got := serve(vr.Middleware(echo), get("/"))
		if got.www != `Bearer realm="notes \"api\"\\"` {
			t.Fatalf("WWW-Authenticate: %s", got.www)
		}
	})
}
