package verifier_test

import (
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/verifier"
)

// introspectionServer answers POST /introspect on iss with the body that answer returns, and
// records what it was asked.
type introspectionServer struct {
	calls  atomic.Int64
	answer atomic.Value // string: the JSON body; "500" for a server error
	form   atomic.Value // url.Values of the last request
	user   atomic.Value // the Basic user of the last request
	pass   atomic.Value
}

func newIntrospection(t *testing.T, iss *testIssuer, answer string) *introspectionServer {
	t.Helper()
	s := &introspectionServer{}
	s.answer.Store(answer)
	iss.SetIntrospection(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		u, p, _ := r.BasicAuth()
		s.user.Store(u)
		s.pass.Store(p)
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		s.form.Store(form)
		a := s.answer.Load().(string)
		if a == "500" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, a)
	})
	return s
}

func TestIntrospection(t *testing.T) {
	es := testKey(t, "ES256")

	t.Run("an active token is accepted and cached for the TTL only", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		in := newIntrospection(t, iss, `{"active":true,"sub":"alice"}`)
		clk := newClock()
		v := newVerifier(t, iss, clk, verifier.WithIntrospection("", "notes api", "s3cr:t&", 30*time.Second))
		tok := mint(t, es, iss.claims(), nil)
		acceptToken(t, v, tok)
		acceptToken(t, v, tok)
		if n := in.calls.Load(); n != 1 {
			t.Fatalf("%d introspection calls; want 1 (cached)", n)
		}
		form := in.form.Load().(url.Values)
		if form.Get("token") != tok || form.Get("token_type_hint") != "access_token" {
			t.Fatalf("form %v", form)
		}
		// RFC 6749 §2.3.1: form-encoded before Basic; the server decodes it back.
		if u, _ := url.QueryUnescape(in.user.Load().(string)); u != "notes api" {
			t.Fatalf("basic user %q", in.user.Load())
		}
		if p, _ := url.QueryUnescape(in.pass.Load().(string)); p != "s3cr:t&" {
			t.Fatalf("basic password %q", in.pass.Load())
		}
		clk.Advance(30 * time.Second)
		acceptToken(t, v, tok)
		if n := in.calls.Load(); n != 2 {
			t.Fatalf("%d introspection calls; want 2 after the TTL", n)
		}
	})
	t.Run("an inactive token is rejected and never cached", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		in := newIntrospection(t, iss, `{"active":false}`)
		v := newVerifier(t, iss, newClock(), verifier.WithIntrospection(iss.URL+"/introspect", "c", "s", time.Minute))
		tok := mint(t, es, iss.claims(), nil)
		rejectToken(t, v, tok, verifier.ErrInactive)
		rejectToken(t, v, tok, verifier.ErrInactive)
		if n := in.calls.Load(); n != 2 {
			t.Fatalf("%d introspection calls; want 2 (no negative cache)", n)
		}
		in.answer.Store(`{"active":true}`)
		acceptToken(t, v, tok)
	})
	t.Run("a revoked token is rejected once the positive cache entry runs out", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		in := newIntrospection(t, iss, `{"active":true}`)
		clk := newClock()
		v := newVerifier(t, iss, clk, verifier.WithIntrospection("", "c", "s", 10*time.Second))
		tok := mint(t, es, iss.claims(), nil)
		acceptToken(t, v, tok)
		in.answer.Store(`{"active":false}`)
		clk.Advance(10 * time.Second)
		rejectToken(t, v, tok, verifier.ErrInactive)
	})
	t.Run("with a zero TTL every request is introspected", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		in := newIntrospection(t, iss, `{"active":true}`)
		v := newVerifier(t, iss, newClock(), verifier.WithIntrospection("", "c", "s", 0))
		tok := mint(t, es, iss.claims(), nil)
		acceptToken(t, v, tok)
		acceptToken(t, v, tok)
		if n := in.calls.Load(); n != 2 {
			t.Fatalf("%d introspection calls; want 2", n)
		}
	})
	t.Run("local checks come first", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		in := newIntrospection(t, iss, `{"active":true}`)
		v := newVerifier(t, iss, newClock(), verifier.WithIntrospection("", "c", "s", time.Minute))
		rejectToken(t, v, mint(t, es, with(iss.claims(), map[string]any{"exp": t0.Add(-time.Hour).Unix()}), nil), verifier.ErrExpired)
		rejectToken(t, v, mint(t, attackerKeyFor(t), iss.claims(), nil), verifier.ErrKeyNotFound)
		if n := in.calls.Load(); n != 0 {
			t.Fatalf("%d introspection calls for locally invalid tokens; want 0", n)
		}
	})
	for name, answer := range map[string]string{
		"a server error":         "500",
		"a body that is no JSON": `<html>`,
		"no active member":       `{"sub":"alice"}`,
		"active as a string":     `{"active":"true"}`,
		"active as a number":     `{"active":1}`,
		"active twice":           `{"active":false,"active":true}`,
	} {
		t.Run("an introspection answer with "+name+" is a rejection (fail closed)", func(t *testing.T) {
			iss := newTestIssuer(t, es)
			newIntrospection(t, iss, answer)
			v := newVerifier(t, iss, newClock(), verifier.WithIntrospection("", "c", "s", time.Minute))
			rejectToken(t, v, mint(t, es, iss.claims(), nil), verifier.ErrUnavailable)

			got := serve(v.Middleware(echo), get("/", "Bearer "+mint(t, es, iss.claims(), nil)))
			if got.status != http.StatusServiceUnavailable || got.body != `{"error":"temporarily_unavailable","error_description":"the access token cannot be checked now"}`+"\n" {
				t.Fatalf("middleware answered %d %q", got.status, got.body)
			}
		})
	}
	t.Run("an unreachable endpoint is a rejection", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		v := newVerifier(t, iss, newClock(), verifier.WithIntrospection("http://127.0.0.1:1/introspect", "c", "s", time.Minute))
		rejectToken(t, v, mint(t, es, iss.claims(), nil), verifier.ErrUnavailable)
	})
	t.Run("an inactive token is 401 invalid_token in the middleware", func(t *testing.T) {
		iss := newTestIssuer(t, es)
		newIntrospection(t, iss, `{"active":false}`)
		v := newVerifier(t, iss, newClock(), verifier.WithIntrospection("", "c", "s", time.Minute))
		got := serve(v.Middleware(echo), get("/", "Bearer "+mint(t, es, iss.claims(), nil)))
		want := `Bearer realm="` + testAudience + `", error="invalid_token", error_description="the access token is no longer active"`
		if got.status != http.StatusUnauthorized || got.www != want {
			t.Fatalf("got %d %s", got.status, got.www)
		}
	})
}
