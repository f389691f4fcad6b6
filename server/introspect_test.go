package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// grant creates a refresh-token family for clientID the way the code flow does (a code, then
// its redemption) and returns its refresh token and its first access token.
func (e *env) grant(clientID, subject, scope string) (rt string, at *accesstoken.Token) {
	e.t.Helper()
	ctx := context.Background()
	now := e.clk.Now()
	family := tokenid.NewFamilyID()
	codeHash := store.Hash("code-" + family)
	if err := e.store.CreateCode(ctx, family, codeHash, store.Code{
		Grant:         store.Grant{ClientID: clientID, Subject: subject, Scope: scope, AuthTime: now, RedirectURI: "http://127.0.0.1/callback"},
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		ExpiresAt:     now.Add(time.Minute),
	}, now); err != nil {
		e.t.Fatalf("create code: %v", err)
	}
	minter := &accesstoken.Minter{Issuer: servertest.Issuer, Clock: e.clk, Keys: keyring.New(keyring.Options{
		Reader: e.reader, Namespace: servertest.Namespace, SigningKey: "default", Clock: e.clk})}
	at, err := minter.Mint(ctx, accesstoken.Params{ClientID: clientID, Subject: subject, Audience: []string{servertest.Audience},
		Scope: scope, Roles: []string{"user"}, Family: family, Lifetime: 15 * time.Minute, AuthTime: now})
	if err != nil {
		e.t.Fatalf("mint: %v", err)
	}
	rt, rtHash := tokenid.NewRefreshToken(family)
	if _, err := e.store.RedeemCode(ctx, family, codeHash, store.FamilyParams{
		RefreshHash: rtHash, ExpiresAt: now.Add(168 * time.Hour), IdleLifetime: 24 * time.Hour, AccessToken: at.Record,
	}, now); err != nil {
		e.t.Fatalf("redeem code: %v", err)
	}
	e.logs.forbid(rt, at.Raw)
	return rt, at
}

const inactiveJSON = `{"active":false}`

func (e *env) assertInactive(t *testing.T, id, secret, token string) {
	t.Helper()
	status, m := e.introspect(id, secret, token)
	assertInactive(t, status, m)
}

func assertInactive(t *testing.T, status int, m map[string]any) {
	t.Helper()
	if status != http.StatusOK || len(m) != 1 || m["active"] != false {
		t.Fatalf("status %d, body %v, want exactly {\"active\":false}", status, m)
	}
}

// Case 65, 66 and decision D7.
func TestIntrospection(t *testing.T) {
	rs, rsSecret := servertest.ConfidentialClient("rs", "apis", servertest.WithClientID("rs"))
	stranger, strangerSecret := servertest.ConfidentialClient("stranger", "apis", servertest.WithClientID("stranger"),
		servertest.WithAudiences("https://elsewhere.example.test"))
	spa := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"))
	e := newEnv(t, withObjects(rs, rsSecret, stranger, strangerSecret, spa))
	rsPass, strangerPass := servertest.SecretOf(rsSecret), servertest.SecretOf(strangerSecret)
	tok := e.cc(nil)
	e.logs.forbid(tok)

	t.Run("without client authentication: 401", func(t *testing.T) {
		rec := e.post("/introspect", url.Values{"token": {tok}})
		assertError(t, rec, 401, "invalid_client", "client authentication failed")
		rec = e.post("/introspect", url.Values{"token": {tok}, "client_id": {"spa"}})
		assertError(t, rec, 401, "invalid_client", "client authentication failed")
		rec = e.post("/introspect", url.Values{"token": {tok}}, basic("svc", "wrong"))
		assertError(t, rec, 401, "invalid_client", "client authentication failed")
	})
	t.Run("token is required", func(t *testing.T) {
		assertError(t, e.post("/introspect", url.Values{}, basic("svc", e.svcSecret)), 400, "invalid_request", "token is required")
	})
	t.Run("own token: the whole response", func(t *testing.T) {
		rec := e.post("/introspect", url.Values{"token": {tok}}, basic("svc", e.svcSecret))
		assertNoStore(t, rec)
		_, c := jwtParts(t, tok)
		assertJSON(t, rec.Body.Bytes(), fmt.Sprintf(`{"active":true,"scope":"read write","client_id":"svc","sub":"client:svc",
			"aud":%q,"iss":%q,"exp":%v,"iat":%v,"token_type":"Bearer","jti":%q}`,
			servertest.Audience, servertest.Issuer, c["exp"], c["iat"], c["jti"]))
	})
	t.Run("a resource server of the token's audience", func(t *testing.T) {
		status, m := e.introspect("rs", rsPass, tok)
		if status != 200 || m["active"] != true {
			t.Fatalf("%d %v", status, m)
		}
	})
	t.Run("any other client: inactive", func(t *testing.T) {
		e.assertInactive(t, "stranger", strangerPass, tok)
		rec := e.post("/introspect", url.Values{"token": {tok}}, basic("stranger", strangerPass))
		if rec.Body.String() != inactiveJSON+"\n" {
			t.Fatalf("body %q", rec.Body)
		}
	})
	t.Run("a wrong hint still finds the token", func(t *testing.T) {
		status, m := e.introspect("svc", e.svcSecret, tok, "token_type_hint", "refresh_token")
		if status != 200 || m["active"] != true {
			t.Fatalf("%d %v", status, m)
		}
	})

	keys := e.keys.Keys[0]
	signed := func(typ string, claims map[string]any) string {
		return signJWS(t, jose.ES256, keys.SigningJWK(), claims, map[jose.HeaderKey]any{"typ": typ})
	}
	_, c := jwtParts(t, tok)
	withClaims := func(edit func(map[string]any)) map[string]any {
		m := map[string]any{}
		for k, v := range c {
			m[k] = v
		}
		edit(m)
		return m
	}
	parts := strings.Split(tok, ".")
	hdrNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"` + keys.KeyID + `"}`))
	for name, token := range map[string]string{
		"malformed":                   "not-a-token",
		"three garbage parts":         "a.b.c",
		"truncated":                   tok[:len(tok)-6],
		"signature of another token":  parts[0] + "." + parts[1] + "." + strings.Split(e.cc(nil), ".")[2],
		"alg none":                    hdrNone + "." + parts[1] + ".",
		"typ JWT":                     signed("JWT", c),
		"no typ":                      signed("", c),
		"another issuer":              signed("at+jwt", withClaims(func(m map[string]any) { m["iss"] = "https://evil.example.test" })),
		"never recorded":              signed("at+jwt", withClaims(func(m map[string]any) { m["jti"] = tokenid.NewJTI("") })),
		"an unknown refresh token":    tokenid.NewFamilyID() + "." + strings.Repeat("A", 43),
		"a refresh token of bad form": "x.y",
		"a JWS in JSON serialization": `{"payload":"` + parts[1] + `","signatures":[]}`,
		"huge":                        strings.Repeat("a.", 20000),
	} {
		t.Run(name+": inactive", func(t *testing.T) {
			e.assertInactive(t, "svc", e.svcSecret, token)
		})
	}

	t.Run("refresh tokens: the owner only", func(t *testing.T) {
		rt, at := e.grant("svc", "alice", "read")
		rec := e.post("/introspect", url.Values{"token": {rt}}, basic("svc", e.svcSecret))
		assertJSON(t, rec.Body.Bytes(), fmt.Sprintf(`{"active":true,"scope":"read","client_id":"svc","sub":"alice","iss":%q,
			"exp":%d,"token_type":"refresh_token"}`, servertest.Issuer, e.clk.Now().Add(168*time.Hour).Unix()))
		e.assertInactive(t, "rs", rsPass, rt)
		// The family's access token, by its owner and by the resource server of its audience.
		for _, who := range [][2]string{{"svc", e.svcSecret}, {"rs", rsPass}} {
			status, m := e.introspect(who[0], who[1], at.Raw)
			if status != 200 || m["active"] != true || m["sub"] != "alice" {
				t.Fatalf("%s: %d %v", who[0], status, m)
			}
		}
	})

	t.Run("expired: inactive", func(t *testing.T) {
		e.clk.Step(15*time.Minute + time.Second)
		e.assertInactive(t, "svc", e.svcSecret, tok)
	})
}

// Case 66, 67, 69, 42: revocation.
func TestRevocation(t *testing.T) {
	other, otherSecret := servertest.ConfidentialClient("other", "apps", servertest.WithClientID("other"))
	spa := servertest.PublicClient("spa", "apps", servertest.WithClientID("spa"))
	e := newEnv(t, withObjects(other, otherSecret, spa))
	otherPass := servertest.SecretOf(otherSecret)
	revoke := func(id, secret, token string, extra ...string) *http.Response {
		form := url.Values{"token": {token}}
		for i := 0; i+1 < len(extra); i += 2 {
			form.Set(extra[i], extra[i+1])
		}
		var rec = e.post("/revoke", form, basic(id, secret))
		if id == "" {
			rec = e.post("/revoke", form)
		}
		return rec.Result()
	}
	assertOK := func(t *testing.T, resp *http.Response) {
		t.Helper()
		body := readAll(t, resp.Body)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
		}
	}
	active := func(t *testing.T, token string) bool {
		t.Helper()
		status, m := e.introspect("svc", e.svcSecret, token)
		if status != 200 {
			t.Fatalf("introspect: %d %v", status, m)
		}
		return m["active"] == true
	}

	t.Run("unknown and malformed tokens: 200", func(t *testing.T) {
		for _, tok := range []string{"nope", "a.b", "a.b.c", tokenid.NewFamilyID() + "." + strings.Repeat("A", 43)} {
			assertOK(t, revoke("svc", e.svcSecret, tok))
		}
	})
	t.Run("token is required, authentication is required", func(t *testing.T) {
		rec := e.post("/revoke", url.Values{}, basic("svc", e.svcSecret))
		assertError(t, rec, 400, "invalid_request", "token is required")
		rec = e.post("/revoke", url.Values{"token": {"x"}})
		assertError(t, rec, 401, "invalid_client", "client authentication failed")
	})
	t.Run("another client's access token: unauthorized_client, unchanged", func(t *testing.T) {
		tok := e.cc(nil)
		rec := e.post("/revoke", url.Values{"token": {tok}}, basic("other", otherPass))
		assertError(t, rec, 400, "unauthorized_client", "the token was issued to another client")
		if !active(t, tok) {
			t.Fatal("the token was revoked by another client")
		}
	})
	t.Run("own access token, with a wrong hint, twice", func(t *testing.T) {
		tok := e.cc(nil)
		assertOK(t, revoke("svc", e.svcSecret, tok, "token_type_hint", "refresh_token"))
		if active(t, tok) {
			t.Fatal("still active after revocation")
		}
		assertOK(t, revoke("svc", e.svcSecret, tok))
	})
	t.Run("a refresh token revokes its family", func(t *testing.T) {
		rt, at := e.grant("svc", "alice", "read")
		if !active(t, rt) || !active(t, at.Raw) {
			t.Fatal("family not active before")
		}
		rec := e.post("/revoke", url.Values{"token": {rt}}, basic("other", otherPass))
		assertError(t, rec, 400, "unauthorized_client", "the token was issued to another client")
		if !active(t, rt) {
			t.Fatal("another client revoked the family")
		}
		assertOK(t, revoke("svc", e.svcSecret, rt, "token_type_hint", "access_token"))
		if active(t, rt) || active(t, at.Raw) {
			t.Fatal("family still active after revoking its refresh token")
		}
		assertOK(t, revoke("svc", e.svcSecret, rt))
	})
	t.Run("a public client revokes with its client_id", func(t *testing.T) {
		rt, _ := e.grant("spa", "bob", "read")
		assertOK(t, revoke("", "", rt, "client_id", "spa"))
		status, m := e.introspect("svc", e.svcSecret, rt)
		assertInactive(t, status, m)
	})
	t.Run("revoking an access token of a family leaves the family", func(t *testing.T) {
		rt, at := e.grant("svc", "carol", "read")
		assertOK(t, revoke("svc", e.svcSecret, at.Raw))
		if active(t, at.Raw) || !active(t, rt) {
			t.Fatal("wrong revocation scope")
		}
	})
}
