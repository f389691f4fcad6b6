package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

const invalidRT = "the refresh token is invalid, expired or revoked"

// withReuseInterval sets spa's refreshTokenPolicy.reuseInterval.
func withReuseInterval(d time.Duration) flowOption {
	return func(spa, _ *latchkeyv1.OAuthClient) {
		spa.Spec.RefreshTokenPolicy.ReuseInterval = &metav1.Duration{Duration: d}
	}
}

// withRefreshLifetimes sets spa's idle and absolute refresh-token lifetimes.
func withRefreshLifetimes(idle, absolute time.Duration) flowOption {
	return func(spa, _ *latchkeyv1.OAuthClient) {
		spa.Spec.RefreshTokenPolicy.IdleLifetime = &metav1.Duration{Duration: idle}
		spa.Spec.RefreshTokenPolicy.AbsoluteLifetime = &metav1.Duration{Duration: absolute}
	}
}

// rotate refreshes rt and fails the test unless it gets new tokens.
func (e *flowEnv) rotate(t *testing.T, rt string, extra url.Values) tokens {
	t.Helper()
	return e.tokensFrom(t, e.refresh(rt, extra))
}

// Case 31: with reuseInterval 0, R0 → R1, then R0 again: invalid_grant, and R1, every access
// token of the family and every later member are dead; the reuse is logged as an audit event
// and counted.
func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	e := newFlowEnv(t, nil)
	t0 := e.spaTokens(t, "openid read")
	t1 := e.rotate(t, t0.RefreshToken, nil)
	t2 := e.rotate(t, t1.RefreshToken, nil)
	if t2.RefreshToken == t1.RefreshToken || t1.RefreshToken == t0.RefreshToken {
		t.Fatal("rotation returned the same refresh token")
	}
	if e.rtLive(t, t1.RefreshToken) || !e.rtLive(t, t2.RefreshToken) {
		t.Fatal("not exactly the newest refresh token is live")
	}
	assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	for _, at := range []string{t0.AccessToken, t1.AccessToken, t2.AccessToken} {
		if e.active(t, at) {
			t.Fatal("an access token of the family survived the reuse")
		}
	}
	for _, rt := range []string{t1.RefreshToken, t2.RefreshToken} {
		assertError(t, e.refresh(rt, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	}
	logs := e.logs.text()
	if !strings.Contains(logs, `"event"="`+audit.RefreshReuseDetected+`"`) || !strings.Contains(logs, `"client_id"="spa"`) {
		t.Fatalf("no audit record:\n%s", logs)
	}
	family, _, _ := tokenid.ParseRefreshToken(t0.RefreshToken)
	if !strings.Contains(logs, `"family"="`+family+`"`) {
		t.Fatal("the audit record does not name the family")
	}
	if got := metricValue(t, e.env, "latchkey_server_refresh_token_reuse_total", map[string]string{"client": "spa"}); got != 1 {
		t.Fatalf("reuse counter %v", got)
	}
	// The generation is counted by the store: 1 after the exchange, +1 per rotation.
	rt := e.spaTokens(t, "openid").RefreshToken
	for range 3 {
		rt = e.rotate(t, rt, nil).RefreshToken
	}
	f, h, _ := tokenid.ParseRefreshToken(rt)
	fam, err := e.store.LookupRefresh(ctx(), f, h, e.clk.Now())
	if err != nil || fam.Generation != 4 {
		t.Fatalf("generation %d (%v), want 4", fam.Generation, err)
	}
}

// Case 32: 20 concurrent refreshes of one live token with reuseInterval 0: exactly one 200, 19
// invalid_grant, and the family ends revoked, the winner's successor included.
func TestRefreshConcurrentNoGrace(t *testing.T) {
	e := newFlowEnv(t, nil)
	t0 := e.spaTokens(t, "openid read")
	results := e.concurrentRefresh(t, t0.RefreshToken, 20)
	ok := 0
	for _, r := range results {
		if r.status == http.StatusOK {
			ok++
			if e.rtLive(t, r.tokens.RefreshToken) {
				t.Fatal("the winner's successor survived 19 reuses")
			}
		} else if r.status != http.StatusBadRequest || r.error != "invalid_grant" {
			t.Fatalf("a loser got %d %s", r.status, r.error)
		}
	}
	if ok != 1 {
		t.Fatalf("%d winners", ok)
	}
}

// Case 33, decision D1: with reuseInterval 10s, 20 concurrent refreshes all succeed, each one
// replacing the family's live token, so exactly one refresh token is live at the end: the family
// never forks.
func TestRefreshConcurrentWithGrace(t *testing.T) {
	e := newFlowEnv(t, nil, withReuseInterval(10*time.Second))
	t0 := e.spaTokens(t, "openid read")
	results := e.concurrentRefresh(t, t0.RefreshToken, 20)
	live := 0
	for _, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("a refresh in the grace interval got %d %s", r.status, r.error)
		}
		if e.rtLive(t, r.tokens.RefreshToken) {
			live++
		}
	}
	if live != 1 {
		t.Fatalf("%d live refresh tokens, want exactly 1", live)
	}
	f, _, _ := tokenid.ParseRefreshToken(t0.RefreshToken)
	for _, r := range results {
		if rf, _, _ := tokenid.ParseRefreshToken(r.tokens.RefreshToken); rf != f {
			t.Fatal("a successor outside the family")
		}
	}
}

type refreshResult struct {
	status int
	error  string
	tokens tokens
}

func (e *flowEnv) concurrentRefresh(t *testing.T, rt string, n int) []refreshResult {
	t.Helper()
	results := make([]refreshResult, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			rec := e.refresh(rt, nil)
			results[i].status = rec.Code
			var body struct {
				tokens
				Error string `json:"error"`
			}
			decode(t, rec.Body.Bytes(), &body)
			results[i].tokens, results[i].error = body.tokens, body.Error
			e.logs.forbid(body.AccessToken, body.RefreshToken, body.IDToken)
		})
	}
	close(start)
	wg.Wait()
	return results
}

// lossyStore commits a rotation and then reports the store unavailable, as if the connection
// died between the script's commit and its reply (SECURITY-CASES 77): the fault hook of the
// lost-response cases.
type lossyStore struct {
	store.Store
	armed    atomic.Bool
	lastHash atomic.Value // the NewHash of the lost rotation
}

func (s *lossyStore) RotateRefresh(ctx context.Context, p store.RotateParams, now time.Time) (store.Family, error) {
	fam, err := s.Store.RotateRefresh(ctx, p, now)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		s.lastHash.Store(p.NewHash)
		return store.Family{}, fmt.Errorf("rotate refresh token: %w: connection reset", store.ErrUnavailable)
	}
	return fam, err
}

// Case 34, 77: the rotation commits but the reply is lost (503); the client retries R0 a second
// later. Within reuseInterval the retry succeeds and the lost successor is dead; with 0 the
// family is revoked and the user must sign in again. Never two live successors.
func TestRefreshLostResponse(t *testing.T) {
	for _, tt := range []struct {
		reuse time.Duration
		ok    bool
	}{{0, false}, {10 * time.Second, true}, {2 * time.Second, true}} {
		t.Run(fmt.Sprintf("reuseInterval %s", tt.reuse), func(t *testing.T) {
			var lossy *lossyStore
			e := newFlowEnv(t, []envOption{withOptions(func(o *server.Options) {
				lossy = &lossyStore{Store: o.Store}
				o.Store = lossy
			})}, withReuseInterval(tt.reuse))
			t0 := e.spaTokens(t, "openid read")
			lossy.armed.Store(true)
			assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
			lost := lossy.lastHash.Load().(string)
			e.advance(time.Second)
			rec := e.refresh(t0.RefreshToken, nil)
			family, _, _ := tokenid.ParseRefreshToken(t0.RefreshToken)
			_, lostErr := e.store.LookupRefresh(ctx(), family, lost, e.clk.Now())
			if lostErr == nil {
				t.Fatal("the lost successor is live after the retry")
			}
			if !tt.ok {
				assertError(t, rec, http.StatusBadRequest, "invalid_grant", invalidRT)
				if e.active(t, t0.AccessToken) {
					t.Fatal("the family survived")
				}
				return
			}
			t1 := e.tokensFrom(t, rec)
			if !e.rtLive(t, t1.RefreshToken) {
				t.Fatal("the retry's successor is not live")
			}
			e.rotate(t, t1.RefreshToken, nil)
		})
	}
}

// Case 35: reuse after the grace window revokes the family; so does presenting a token two
// generations old inside the window; an idle-expired token is refused even inside the window.
func TestRefreshGraceLimits(t *testing.T) {
	t.Run("after the window", func(t *testing.T) {
		e := newFlowEnv(t, nil, withReuseInterval(10*time.Second))
		t0 := e.spaTokens(t, "openid")
		t1 := e.rotate(t, t0.RefreshToken, nil)
		e.advance(10 * time.Second)
		assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
		if e.rtLive(t, t1.RefreshToken) || e.active(t, t1.AccessToken) {
			t.Fatal("the family survived a reuse after the window")
		}
	})
	t.Run("two generations old", func(t *testing.T) {
		e := newFlowEnv(t, nil, withReuseInterval(10*time.Second))
		t0 := e.spaTokens(t, "openid")
		t1 := e.rotate(t, t0.RefreshToken, nil)
		t2 := e.rotate(t, t1.RefreshToken, nil)
		assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
		if e.rtLive(t, t2.RefreshToken) {
			t.Fatal("the family survived")
		}
	})
	t.Run("idle-expired inside the window", func(t *testing.T) {
		e := newFlowEnv(t, nil, withReuseInterval(5*time.Minute), withRefreshLifetimes(time.Minute, time.Hour))
		t0 := e.spaTokens(t, "openid")
		e.advance(59 * time.Second)
		t1 := e.rotate(t, t0.RefreshToken, nil)
		e.advance(2 * time.Second) // R0's own idle deadline has passed; the window has not
		assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
		e.rotate(t, t1.RefreshToken, nil)
	})
}

// Case 36: on a fake clock, a token unused for idleLifetime+1s is refused; used every
// idleLifetime-1s it lives until the family's absolute lifetime, then is refused even if used a
// moment before.
func TestRefreshLifetimes(t *testing.T) {
	const idle, absolute = time.Hour, 4 * time.Hour
	t.Run("idle", func(t *testing.T) {
		e := newFlowEnv(t, nil, withRefreshLifetimes(idle, absolute))
		t0 := e.spaTokens(t, "openid")
		e.advance(idle + time.Second)
		assertError(t, e.refresh(t0.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	})
	t.Run("used in time until the absolute end", func(t *testing.T) {
		e := newFlowEnv(t, nil, withRefreshLifetimes(idle, absolute))
		rt := e.spaTokens(t, "openid").RefreshToken
		start := e.clk.Now()
		for e.clk.Now().Add(idle - time.Second).Before(start.Add(absolute)) {
			e.advance(idle - time.Second)
			rt = e.rotate(t, rt, nil).RefreshToken
		}
		e.advance(start.Add(absolute).Sub(e.clk.Now()) - time.Second)
		rt = e.rotate(t, rt, nil).RefreshToken // a moment before the end
		e.advance(time.Second)
		assertError(t, e.refresh(rt, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	})
}

// Case 38: client A's refresh token presented by client B (with B's credentials, or a public
// client's client_id), or by confidential A without authentication, is refused, and A's family
// is not revoked.
func TestRefreshClientBinding(t *testing.T) {
	other := servertest.PublicClient("other", "apps", servertest.WithClientID("other"))
	e := newFlowEnv(t, []envOption{withObjects(other)})
	code, p := e.codeFor(t, "web", webRedirect, "openid")
	web := e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
	spa := e.spaTokens(t, "openid")

	form := func(rt string) url.Values { return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}} }
	assertError(t, e.refresh(web.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	otherForm := form(spa.RefreshToken)
	otherForm.Set("client_id", "other")
	assertError(t, e.post("/token", otherForm), http.StatusBadRequest, "invalid_grant", invalidRT)
	noAuth := form(web.RefreshToken)
	noAuth.Set("client_id", "web")
	assertError(t, e.post("/token", noAuth), http.StatusUnauthorized, "invalid_client", "client authentication failed")
	assertError(t, e.post("/token", form(web.RefreshToken)), http.StatusUnauthorized, "invalid_client", "client authentication failed")
	// With a scope, the pre-check refuses another client's token too, without rotating.
	withScope := form(spa.RefreshToken)
	withScope.Set("client_id", "other")
	withScope.Set("scope", "openid")
	assertError(t, e.post("/token", withScope), http.StatusBadRequest, "invalid_grant", invalidRT)

	if !e.rtLive(t, web.RefreshToken) || !e.rtLive(t, spa.RefreshToken) {
		t.Fatal("a refused presentation revoked the family")
	}
	e.tokensFrom(t, e.post("/token", form(web.RefreshToken), basic("web", e.webSecret)))
	e.rotate(t, spa.RefreshToken, nil)
	// Malformed tokens are refused without asking the store.
	for _, bad := range []string{"x", spa.RefreshToken + "x", strings.ToUpper(spa.RefreshToken), web.AccessToken} {
		assertError(t, e.refresh(bad, nil), http.StatusBadRequest, "invalid_grant", invalidRT)
	}
	assertError(t, e.refresh("", nil), http.StatusBadRequest, "invalid_request", "refresh_token is required")
}

// Case 39: scope on refresh may only narrow; the new refresh token keeps the grant's scope.
func TestRefreshScopeNarrowing(t *testing.T) {
	e := newFlowEnv(t, nil)
	t0 := e.spaTokens(t, "openid read")
	for _, sc := range []string{"openid read profile", "profile", "openid email"} {
		assertError(t, e.refresh(t0.RefreshToken, url.Values{"scope": {sc}}), http.StatusBadRequest, "invalid_scope",
			"the requested scope exceeds the grant")
	}
	// Beyond the client's registration: refused by the token endpoint before the grant.
	assertError(t, e.refresh(t0.RefreshToken, url.Values{"scope": {"write"}}), http.StatusBadRequest, "invalid_scope",
		"the requested scope exceeds what the client may request")
	// Refused requests did not consume the token.
	t1 := e.rotate(t, t0.RefreshToken, url.Values{"scope": {"read"}})
	_, c := jwtParts(t, t1.AccessToken)
	if c["scope"] != "read" || t1.Scope != "read" || t1.IDToken != "" {
		t.Fatalf("narrowed: scope %v / %q, id_token %v", c["scope"], t1.Scope, t1.IDToken != "")
	}
	t2 := e.rotate(t, t1.RefreshToken, nil)
	_, c = jwtParts(t, t2.AccessToken)
	if c["scope"] != "openid read" || t2.IDToken == "" {
		t.Fatalf("after narrowing, the next refresh has scope %v", c["scope"])
	}
}

// Case 40: the grant is re-checked at every refresh.
func TestRefreshRechecksTheGrant(t *testing.T) {
	type change struct {
		name       string
		apply      func(t *testing.T, e *flowEnv)
		status     int
		code, desc string
		revoked    bool
	}
	for _, c := range []change{
		{"the client loses a granted scope", func(t *testing.T, e *flowEnv) {
			spa := e.spa.DeepCopy()
			spa.Spec.Scopes = []string{"openid"}
			servertest.Update(t, e.reader, spa)
		}, 400, "invalid_grant", "the client may no longer request the granted scope", true},
		{"the client is deleted", func(t *testing.T, e *flowEnv) {
			if err := e.reader.Delete(ctx(), e.spa.DeepCopy()); err != nil {
				t.Fatal(err)
			}
		}, 401, "invalid_client", "client authentication failed", false},
		{"the client is not Ready", func(t *testing.T, e *flowEnv) {
			spa := e.spa.DeepCopy()
			servertest.SetReady(spa, metav1.ConditionFalse, latchkeyv1.ReasonInvalidSpec)
			servertest.Update(t, e.reader, spa)
		}, 401, "invalid_client", "client authentication failed", false},
		{"the client no longer allows refresh_token", func(t *testing.T, e *flowEnv) {
			spa := e.spa.DeepCopy()
			spa.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
			servertest.Update(t, e.reader, spa)
		}, 400, "unauthorized_client", "the client may not use this grant_type", false},
		{"the user leaves the users Secret", func(t *testing.T, e *flowEnv) {
			s := usersSecret()
			s.Data[latchkeyv1.UsersDataKey] = []byte(fmt.Sprintf("- {username: bob, passwordHash: %q}\n", aliceHash))
			servertest.Update(t, e.reader, s)
		}, 400, "invalid_grant", "the user of the grant no longer exists", true},
		{"the users Secret is broken: 503, nothing revoked", func(t *testing.T, e *flowEnv) {
			s := usersSecret()
			s.Data[latchkeyv1.UsersDataKey] = []byte("[")
			servertest.Update(t, e.reader, s)
		}, 503, "temporarily_unavailable", "the users directory is unavailable", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newFlowEnv(t, nil)
			tk := e.spaTokens(t, "openid read")
			c.apply(t, e)
			assertError(t, e.refresh(tk.RefreshToken, nil), c.status, c.code, c.desc)
			if got := e.rtLive(t, tk.RefreshToken); got == c.revoked {
				t.Fatalf("refresh token live = %v", got)
			}
			if c.revoked && e.active(t, tk.AccessToken) {
				t.Fatal("the family's access token survived")
			}
		})
	}
	t.Run("the client loses an audience of the grant", func(t *testing.T) {
		// SECURITY-CASES 40: the grant was issued for both audiences; the client no longer
		// serves one, so the grant can never be used again and its family is revoked.
		e := newFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) {
			spa.Spec.Audiences = []string{servertest.Audience, "https://old.example.test"}
		})
		tk := e.spaTokens(t, "openid read")
		spa := e.spa.DeepCopy()
		spa.Spec.Audiences = []string{servertest.Audience}
		servertest.Update(t, e.reader, spa)
		assertError(t, e.refresh(tk.RefreshToken, nil), 400, "invalid_grant", "the client no longer serves the audience of the grant")
		if e.rtLive(t, tk.RefreshToken) || e.active(t, tk.AccessToken) {
			t.Fatal("the family survived the loss of its audience")
		}
	})
	t.Run("an audience added reaches the grant", func(t *testing.T) {
		e := newFlowEnv(t, nil)
		tk := e.spaTokens(t, "openid read")
		spa := e.spa.DeepCopy()
		spa.Spec.Audiences = append(slices.Clone(spa.Spec.Audiences), "https://new.example.test")
		servertest.Update(t, e.reader, spa)
		_, c := jwtParts(t, e.rotate(t, tk.RefreshToken, nil).AccessToken)
		if !strings.Contains(fmt.Sprint(c["aud"]), "https://new.example.test") {
			t.Fatalf("aud %v after an audience was added", c["aud"])
		}
	})
	t.Run("roles are read afresh", func(t *testing.T) {
		e := newFlowEnv(t, nil)
		tk := e.spaTokens(t, "openid read")
		s := usersSecret()
		s.Data[latchkeyv1.UsersDataKey] = []byte(fmt.Sprintf("- {username: alice, passwordHash: %q, roles: [viewer]}\n", aliceHash))
		servertest.Update(t, e.reader, s)
		_, c := jwtParts(t, e.rotate(t, tk.RefreshToken, nil).AccessToken)
		if fmt.Sprint(c["roles"]) != "[viewer]" {
			t.Fatalf("roles %v", c["roles"])
		}
	})
}

// Case 42: revoking any refresh token of the chain, used or live, kills the whole family,
// access tokens included.
func TestRevokeAnyRefreshTokenOfTheChain(t *testing.T) {
	for _, which := range []string{"used", "live"} {
		t.Run(which, func(t *testing.T) {
			e := newFlowEnv(t, nil)
			code, p := e.codeFor(t, "web", webRedirect, "openid")
			t0 := e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
			t1 := e.tokensFrom(t, e.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t0.RefreshToken}},
				basic("web", e.webSecret)))
			rt := t0.RefreshToken
			if which == "live" {
				rt = t1.RefreshToken
			}
			if rec := e.post("/revoke", url.Values{"token": {rt}}, basic("web", e.webSecret)); rec.Code != http.StatusOK {
				t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
			}
			for _, tok := range []string{t0.AccessToken, t1.AccessToken, t1.RefreshToken} {
				if e.active(t, tok) {
					t.Fatal("a token of the family is still active")
				}
			}
			if e.rtLive(t, t1.RefreshToken) {
				t.Fatal("the live refresh token survived")
			}
		})
	}
}

// Case 41: after full flows, no Redis value holds a refresh token, code, client secret,
// code_verifier, password, CSRF token, request id or cookie in clear, and every key has a TTL.
func TestStoreHygieneAfterFullFlows(t *testing.T) {
	e := newFlowEnv(t, nil)
	b := e.browser(t)
	p := newPKCE()
	rec := b.authorize(authz("web", webRedirect, "openid read", p))
	loginPage := b.follow(rec)
	requestID, csrf := pageForm(t, loginPage)
	rec = b.submitLogin(loginPage, "alice", alicePassword)
	consent := b.follow(rec)
	_, csrf2 := pageForm(t, consent)
	code := e.codeFrom(t, b.submitConsent(consent, "allow"), webRedirect, "st-web")
	tk := e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
	t1 := e.tokensFrom(t, e.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken}},
		basic("web", e.webSecret)))
	spa := e.spaTokens(t, "openid")
	e.rotate(t, spa.RefreshToken, nil)
	// A failed login, for the throttling counters.
	b2 := e.browser(t)
	b2.submitLogin(b2.follow(b2.authorize(authz("spa", spaRedirect, "openid", newPKCE()))), "alice", "wrong-password-x")

	secrets := map[string]string{
		"refresh token": tk.RefreshToken, "rotated refresh token": t1.RefreshToken, "code": code,
		"client secret": e.webSecret, "code_verifier": p.verifier, "password": alicePassword,
		"wrong password": "wrong-password-x", "request id": requestID, "csrf token": csrf, "consent csrf token": csrf2,
		"session cookie": b.cookie(sessionCookie), "browser cookie": b.cookie(browserCookie),
	}
	rdb := e.redis.Client(t)
	keys, err := rdb.Keys(ctx(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx(), k).Result()
		if err != nil || ttl < 0 {
			t.Errorf("key %q has no TTL (%v, %v)", k, ttl, err)
		}
		var dump string
		switch typ := rdb.Type(ctx(), k).Val(); typ {
		case "string":
			dump = rdb.Get(ctx(), k).Val()
		case "hash":
			dump = fmt.Sprint(rdb.HGetAll(ctx(), k).Val())
		case "set":
			dump = fmt.Sprint(rdb.SMembers(ctx(), k).Val())
		case "zset":
			dump = fmt.Sprint(rdb.ZRange(ctx(), k, 0, -1).Val())
		default:
			t.Fatalf("key %q of type %s", k, typ)
		}
		for name, v := range secrets {
			if v == "" {
				t.Fatalf("no %s to look for", name)
			}
			if strings.Contains(k, v) || strings.Contains(dump, v) {
				t.Errorf("key %q holds the %s in clear", k, name)
			}
			// Not even the random half of a family-prefixed secret.
			if _, rest, ok := strings.Cut(v, "."); ok && (strings.Contains(dump, rest) || strings.Contains(k, rest)) {
				t.Errorf("key %q holds the secret part of the %s", k, name)
			}
		}
	}
}
