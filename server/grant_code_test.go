package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// codeFor runs an authorization for client (spa or web) as alice and returns the code and its
// PKCE pair.
func (e *flowEnv) codeFor(t *testing.T, clientID, redirectURI, scope string) (string, pkcePair) {
	t.Helper()
	p := newPKCE()
	e.logs.forbid(p.verifier)
	rec := e.browser(t).signIn(authz(clientID, redirectURI, scope, p), "alice", alicePassword)
	return e.codeFrom(t, rec, redirectURI, "st-"+clientID), p
}

// Case 30 and the happy path: a code exchange gives a Bearer access token (RFC 9068), a refresh
// token, the scope and an id_token, with no-store and JSON.
func TestCodeExchange(t *testing.T) {
	e := newFlowEnv(t, nil)
	code, p := e.codeFor(t, "spa", spaRedirect, "openid read")
	tk := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	if tk.RefreshToken == "" || tk.IDToken == "" || tk.Scope != "openid read" || tk.ExpiresIn != 900 {
		t.Fatalf("token response %+v", tk)
	}
	h, c := jwtParts(t, tk.AccessToken)
	if h["typ"] != "at+jwt" || c["sub"] != "alice" || c["client_id"] != "spa" || c["scope"] != "openid read" ||
		c["aud"] != servertest.Audience || fmt.Sprint(c["roles"]) != "[admin user]" || c["auth_time"] == nil {
		t.Fatalf("access token %v %v", h, c)
	}
	if !e.active(t, tk.AccessToken) || !e.rtLive(t, tk.RefreshToken) {
		t.Fatal("the issued tokens are not active")
	}
	family, _ := tokenid.FamilyOfJTI(c["jti"].(string))
	if rtFamily, _, _ := tokenid.ParseRefreshToken(tk.RefreshToken); family == "" || rtFamily != family ||
		!strings.HasPrefix(code, family+".") {
		t.Fatalf("code, access token and refresh token are not of one family")
	}
	// A confidential client with consent.
	code, p = e.codeFor(t, "web", webRedirect, "openid email")
	tk = e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
	if tk.RefreshToken == "" || tk.Scope != "email openid" {
		t.Fatalf("web token response %+v", tk)
	}
	// Errors carry no-store and JSON too (case 30).
	rec := e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret))
	assertError(t, rec, http.StatusBadRequest, "invalid_grant", "the authorization code was already used")
}

// Case 28 (code grant) and the refresh-token decision: a client that lists only
// authorization_code gets no refresh token; a client without the code grant is
// unauthorized_client; grant_type missing is invalid_request.
func TestCodeExchangeGrantChecks(t *testing.T) {
	e := newFlowEnv(t, nil, func(spa, _ *latchkeyv1.OAuthClient) {
		spa.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode}
	})
	code, p := e.codeFor(t, "spa", spaRedirect, "openid offline_access")
	tk := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	if tk.RefreshToken != "" {
		t.Fatal("a refresh token for a client without the refresh_token grant, even with offline_access")
	}
	assertError(t, e.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.verifier}},
		basic("svc", e.svcSecret)), http.StatusBadRequest, "unauthorized_client", "the client may not use this grant_type")
	assertError(t, e.post("/token", url.Values{"code": {code}, "client_id": {"spa"}}), http.StatusBadRequest,
		"invalid_request", "grant_type is required")
	assertError(t, e.post("/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"spa"}, "code_verifier": {p.verifier}}),
		http.StatusBadRequest, "invalid_request", "code is required")
	for _, bad := range []string{"x", code + "x", strings.Replace(code, ".", "", 1), "." + code, strings.ToUpper(code)} {
		assertError(t, e.exchange(bad, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
			"the authorization code is invalid or expired")
	}
}

// Case 20, D2: a bad code_verifier is invalid_grant, issues nothing, revokes nothing and does
// not burn the code: the right verifier still works afterwards.
func TestCodeExchangeBadVerifier(t *testing.T) {
	e := newFlowEnv(t, nil)
	earlier := e.spaTokens(t, "openid read")
	code, p := e.codeFor(t, "spa", spaRedirect, "openid read")
	for name, v := range map[string]string{
		"missing":                   "",
		"wrong":                     newPKCE().verifier,
		"the challenge itself":      p.challenge,
		"42 characters":             p.verifier[:42],
		"129 characters":            p.verifier + strings.Repeat("a", 129-len(p.verifier)),
		"an illegal character":      p.verifier[:42] + "+",
		"a space":                   p.verifier[:42] + " ",
		"the verifier in uppercase": strings.ToUpper(p.verifier),
		"the verifier plus one":     p.verifier + "a",
	} {
		t.Run(name, func(t *testing.T) {
			rec := e.exchange(code, v, spaRedirect)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_grant"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			assertNoStore(t, rec)
		})
	}
	if !e.active(t, earlier.AccessToken) || !e.rtLive(t, earlier.RefreshToken) {
		t.Fatal("a bad verifier revoked an earlier grant")
	}
	e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
}

// Case 21: PKCE downgrade, at the store level: a code recorded without a challenge is refused
// with invalid_request, with or without a verifier.
func TestCodeWithoutChallengeIsRefused(t *testing.T) {
	e := newFlowEnv(t, nil)
	now := e.clk.Now()
	family := tokenid.NewFamilyID()
	code, hash := tokenid.NewCode(family)
	e.logs.forbid(code)
	err := e.store.CreateCode(ctx(), family, hash, store.Code{
		Grant:     store.Grant{ClientID: "spa", Subject: "alice", Scope: "openid", AuthTime: now, RedirectURI: spaRedirect},
		ExpiresAt: now.Add(time.Minute),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{newPKCE().verifier, ""} {
		rec := e.exchange(code, v, spaRedirect)
		assertError(t, rec, http.StatusBadRequest, "invalid_request", "pkce: the authorization code has no code_challenge")
	}
}

// Case 22: a code redeemed twice, at once and again after 30 s, is invalid_grant both times,
// and the first exchange's access and refresh tokens are revoked.
func TestCodeReplayRevokesTheFirstExchange(t *testing.T) {
	for _, wait := range []time.Duration{0, 30 * time.Second} {
		t.Run(fmt.Sprintf("replay after %s", wait), func(t *testing.T) {
			e := newFlowEnv(t, nil)
			code, p := e.codeFor(t, "spa", spaRedirect, "openid read")
			tk := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
			e.advance(wait)
			assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
				"the authorization code was already used")
			if e.active(t, tk.AccessToken) || e.rtLive(t, tk.RefreshToken) {
				t.Fatal("the first exchange's tokens survived the replay")
			}
			assertError(t, e.refresh(tk.RefreshToken, nil), http.StatusBadRequest, "invalid_grant", "the refresh token is invalid, expired or revoked")
			assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
				"the authorization code was already used")
			if !strings.Contains(e.logs.text(), `"event"="authorization_code_reuse_detected"`) {
				t.Fatalf("no audit record of the reuse:\n%s", e.logs.text())
			}
		})
	}
}

// Case 23: 20 parallel redemptions of one code: exactly one 200, 19 invalid_grant, and at most
// one family is ever minted (every access token issued belongs to it).
func TestCodeParallelRedemptions(t *testing.T) {
	e := newFlowEnv(t, nil)
	code, p := e.codeFor(t, "spa", spaRedirect, "openid read")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		winners  []tokens
		errs     = map[string]int{}
	)
	start := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			<-start
			rec := e.exchange(code, p.verifier, spaRedirect)
			mu.Lock()
			defer mu.Unlock()
			statuses[rec.Code]++
			if rec.Code == http.StatusOK {
				var tk tokens
				decode(t, rec.Body.Bytes(), &tk)
				e.logs.forbid(tk.AccessToken, tk.RefreshToken, tk.IDToken)
				winners = append(winners, tk)
				return
			}
			var body struct{ Error string }
			decode(t, rec.Body.Bytes(), &body)
			errs[body.Error]++
		})
	}
	close(start)
	wg.Wait()
	if statuses[http.StatusOK] != 1 || statuses[http.StatusBadRequest] != 19 || errs["invalid_grant"] != 19 {
		t.Fatalf("statuses %v, errors %v", statuses, errs)
	}
	family, _, _ := tokenid.ParseCode(code)
	_, c := jwtParts(t, winners[0].AccessToken)
	if f, _ := tokenid.FamilyOfJTI(c["jti"].(string)); f != family {
		t.Fatalf("the winner's family %s is not the code's %s", f, family)
	}
	// The losers were valid replays, so the winner's grant is revoked too (OAuth 2.1 §4.1.3).
	if e.rtLive(t, winners[0].RefreshToken) {
		t.Fatal("the winner's family survived 19 replays")
	}
}

// Case 24, D2: a replay of a used code with a wrong verifier, the wrong client or no client
// authentication is refused and does NOT revoke the legitimate exchange's tokens, so invalid
// replays cannot be used for denial of service.
func TestCodeInvalidReplayRevokesNothing(t *testing.T) {
	e := newFlowEnv(t, nil)
	code, p := e.codeFor(t, "web", webRedirect, "openid read")
	tk := e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
	form := func(v string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {v}, "redirect_uri": {webRedirect}}
	}
	assertError(t, e.post("/token", form(newPKCE().verifier), basic("web", e.webSecret)), http.StatusBadRequest, "invalid_grant",
		"pkce: code_verifier does not match the code_challenge")
	assertError(t, e.post("/token", form(p.verifier), basic("web", "wrong-secret")), http.StatusUnauthorized, "invalid_client",
		"client authentication failed")
	f := form(p.verifier)
	f.Set("client_id", "web")
	assertError(t, e.post("/token", f), http.StatusUnauthorized, "invalid_client", "client authentication failed")
	assertError(t, e.post("/token", form(p.verifier), basic("svc", e.svcSecret)), http.StatusBadRequest, "unauthorized_client",
		"the client may not use this grant_type")
	spaForm := form(p.verifier)
	spaForm.Set("client_id", "spa")
	assertError(t, e.post("/token", spaForm), http.StatusBadRequest, "invalid_grant", "the authorization code was issued to another client")
	redirectForm := form(p.verifier)
	redirectForm.Set("redirect_uri", webRedirect2)
	assertError(t, e.post("/token", redirectForm, basic("web", e.webSecret)), http.StatusBadRequest, "invalid_grant",
		"redirect_uri does not match the authorization request")
	if !e.active(t, tk.AccessToken) || !e.rtLive(t, tk.RefreshToken) {
		t.Fatal("an invalid replay revoked the legitimate tokens")
	}
}

// Case 25: a code older than 60 s is invalid_grant; a code of client A redeemed by client B
// (with B's valid credentials, or a public client's client_id) is invalid_grant, and A's code
// still works afterwards.
func TestCodeExpiryAndClientBinding(t *testing.T) {
	e := newFlowEnv(t, nil)
	t.Run("expired", func(t *testing.T) {
		code, p := e.codeFor(t, "spa", spaRedirect, "openid")
		e.advance(61 * time.Second)
		assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
			"the authorization code is invalid or expired")
	})
	t.Run("just before expiry", func(t *testing.T) {
		code, p := e.codeFor(t, "spa", spaRedirect, "openid")
		e.advance(59 * time.Second)
		e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	})
	t.Run("another client", func(t *testing.T) {
		other := servertest.PublicClient("other", "apps", servertest.WithClientID("other"),
			servertest.WithRedirectURIs(spaRedirect))
		other2, other2Secret := servertest.ConfidentialClient("other2", "apps", servertest.WithClientID("other2"),
			servertest.WithGrants(latchkeyv1.GrantAuthorizationCode), servertest.WithRedirectURIs(webRedirect))
		e := newFlowEnv(t, []envOption{withObjects(other, other2, other2Secret)})
		code, p := e.codeFor(t, "web", webRedirect, "openid")
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.verifier}, "redirect_uri": {webRedirect}}
		assertError(t, e.post("/token", f, basic("other2", servertest.SecretOf(other2Secret))), http.StatusBadRequest, "invalid_grant",
			"the authorization code was issued to another client")
		spaCode, spaP := e.codeFor(t, "spa", spaRedirect, "openid")
		g := url.Values{"grant_type": {"authorization_code"}, "code": {spaCode}, "code_verifier": {spaP.verifier}, "client_id": {"other"}}
		assertError(t, e.post("/token", g), http.StatusBadRequest, "invalid_grant", "the authorization code was issued to another client")
		e.tokensFrom(t, e.exchange(code, p.verifier, webRedirect, basic("web", e.webSecret)))
		e.tokensFrom(t, e.exchange(spaCode, spaP.verifier, spaRedirect))
	})
}

// Case 26: the token request's redirect_uri must be the authorization request's when that one
// was sent (RFC 6749 §4.1.3); it may be omitted only when the authorization request omitted it.
func TestCodeRedirectURIBinding(t *testing.T) {
	e := newFlowEnv(t, nil)
	loopback := "http://127.0.0.1:49152/callback"
	for _, bad := range []string{"", "http://127.0.0.1:49153/callback", "http://127.0.0.1/callback", loopback + "/",
		"HTTP://127.0.0.1:49152/callback", loopback + "?x", "http://[::1]:49152/callback"} {
		t.Run("sent at authorize, token has "+bad, func(t *testing.T) {
			p := newPKCE()
			code := e.codeFrom(t, e.browser(t).signIn(authz("spa", loopback, "openid", p), "alice", alicePassword), loopback, "st-spa")
			assertError(t, e.exchange(code, p.verifier, bad), http.StatusBadRequest, "invalid_grant",
				"redirect_uri does not match the authorization request")
			e.tokensFrom(t, e.exchange(code, p.verifier, loopback)) // not burnt (D2)
		})
	}
	t.Run("omitted at authorize", func(t *testing.T) {
		p := newPKCE()
		code := e.codeFrom(t, e.browser(t).signIn(authz("spa", "", "openid", p), "alice", alicePassword), spaRedirect, "st-spa")
		assertError(t, e.exchange(code, p.verifier, "http://127.0.0.1:1/callback"), http.StatusBadRequest, "invalid_grant",
			"redirect_uri does not match the authorization request")
		e.tokensFrom(t, e.exchange(code, p.verifier, ""))
		p = newPKCE()
		code = e.codeFrom(t, e.browser(t).signIn(authz("spa", "", "openid", p), "alice", alicePassword), spaRedirect, "st-spa")
		e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	})
}

// Case 29: a user's token and a client's token for the same name stay distinguishable.
func TestUserAndClientTokensDistinguishable(t *testing.T) {
	e := newFlowEnv(t, nil)
	p := newPKCE()
	e.logs.forbid(p.verifier)
	code := e.codeFrom(t, e.browser(t).signIn(authz("spa", spaRedirect, "openid read", p), "svc", alicePassword), spaRedirect, "st-spa")
	user := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	_, uc := jwtParts(t, user.AccessToken)
	_, cc := jwtParts(t, e.cc(nil))
	if uc["sub"] != "svc" || uc["roles"] == nil || cc["sub"] != "client:svc" || cc["roles"] != nil {
		t.Fatalf("user token %v, client token %v", uc, cc)
	}
}

// The grant is re-checked at the exchange: a scope the client lost since the authorization, or
// a user who left the users Secret, is invalid_grant; a broken users Secret is 503.
func TestCodeExchangeRechecksTheGrant(t *testing.T) {
	e := newFlowEnv(t, nil)
	code, p := e.codeFor(t, "spa", spaRedirect, "openid read")
	spa := e.spa.DeepCopy()
	spa.Spec.Scopes = []string{"openid"}
	servertest.Update(t, e.reader, spa)
	assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
		"the client may no longer request the granted scope")

	code, p = e.codeFor(t, "spa", spaRedirect, "openid")
	s := usersSecret()
	s.Data[latchkeyv1.UsersDataKey] = []byte("- {username: bob, passwordHash: \"" + aliceHash + "\"}\n")
	servertest.Update(t, e.reader, s)
	assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
		"the user of the grant no longer exists")

	s.Data[latchkeyv1.UsersDataKey] = []byte("not: [yaml")
	servertest.Update(t, e.reader, s)
	rec := e.exchange(code, p.verifier, spaRedirect)
	assertError(t, rec, http.StatusServiceUnavailable, "temporarily_unavailable", "the users directory is unavailable")
}

// Case 76 (token): the code exchange with Redis down is 503 and issues nothing.
func TestCodeExchangeRedisDown(t *testing.T) {
	e := newFlowEnv(t, nil)
	code, p := e.codeFor(t, "spa", spaRedirect, "openid")
	e.redis.Kill()
	assertError(t, e.exchange(code, p.verifier, spaRedirect), http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
}
