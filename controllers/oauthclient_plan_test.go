package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

func TestClientIDWinner(t *testing.T) {
	c := func(ns, name, uid string, created time.Duration) claimant {
		return claimant{Namespace: ns, Name: name, UID: typesUID(uid), Created: t0.Add(created)}
	}
	cases := []struct {
		name string
		cs   []claimant
		want string
	}{
		{"a sole claimant wins", []claimant{c("shop", "web", "u1", 0)}, "shop/web"},
		{"the oldest resource wins", []claimant{c("b", "squatter", "a", time.Hour), c("a", "owner", "z", 0)}, "a/owner"},
		{"a later resource never takes over, whatever its UID or namespace", []claimant{c("a", "owner", "zz", 0), c("0", "x", "00", time.Second)}, "a/owner"},
		{"equal creation times go to the smaller UID", []claimant{c("a", "one", "b-uid", 0), c("b", "two", "a-uid", 0)}, "b/two"},
		{"objects without UID or creation time (--dev) go to namespace then name", []claimant{
			{Namespace: "b", Name: "a"}, {Namespace: "a", Name: "z"}, {Namespace: "a", Name: "b"}}, "a/b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := clientIDWinner(tc.cs)
			if got := w.Namespace + "/" + w.Name; got != tc.want {
				t.Errorf("clientIDWinner() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSharedAudiences(t *testing.T) {
	c := func(ns, name, uid string, created time.Duration, auds ...string) audienceClaimant {
		return audienceClaimant{claimant: claimant{Namespace: ns, Name: name, UID: typesUID(uid), Created: t0.Add(created)}, Audiences: auds}
	}
	shop := c("shop", "checkout", "s", time.Hour, "payments-api", "shop-api")
	cases := []struct {
		name   string
		self   audienceClaimant
		others []audienceClaimant
		want   []audienceShare
	}{
		{"no other claimant", shop, nil, nil},
		{"an older client of another namespace owns the audience",
			shop, []audienceClaimant{c("payments", "api", "p", 0, "payments-api")},
			[]audienceShare{{Audience: "payments-api", Namespace: "payments"}}},
		{"the older client is not flagged by a newer one",
			c("payments", "api", "p", 0, "payments-api"), []audienceClaimant{shop}, nil},
		{"a client of the same namespace shares freely",
			shop, []audienceClaimant{c("shop", "web", "w", 0, "payments-api", "shop-api")}, nil},
		{"the audience stays with the namespace of its oldest claimant",
			shop, []audienceClaimant{c("shop", "first", "f", 0, "payments-api"), c("payments", "api", "p", time.Minute, "payments-api")}, nil},
		{"an older client naming other audiences is no share",
			shop, []audienceClaimant{c("payments", "api", "p", 0, "payments-internal")}, nil},
		{"equal creation times go to the smaller UID",
			c("shop", "checkout", "b-uid", 0, "payments-api"), []audienceClaimant{c("payments", "api", "a-uid", 0, "payments-api")},
			[]audienceShare{{Audience: "payments-api", Namespace: "payments"}}},
		{"equal creation times, the smaller UID is not flagged",
			c("payments", "api", "a-uid", 0, "payments-api"), []audienceClaimant{c("shop", "checkout", "b-uid", 0, "payments-api")}, nil},
		{"several audiences, sorted, each with its namespace, duplicates once",
			c("shop", "checkout", "s", time.Hour, "z-api", "a-api", "z-api", "shop-api"),
			[]audienceClaimant{c("zeta", "z", "z", 0, "z-api"), c("alpha", "a", "a", time.Minute, "a-api"), c("late", "l", "l", 2*time.Hour, "shop-api")},
			[]audienceShare{{Audience: "a-api", Namespace: "alpha"}, {Audience: "z-api", Namespace: "zeta"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sharedAudiences(tc.self, tc.others); !slices.Equal(got, tc.want) {
				t.Errorf("sharedAudiences() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAudienceSharedMessage(t *testing.T) {
	got := audienceSharedMessage([]audienceShare{{Audience: "a-api", Namespace: "alpha"}, {Audience: "payments-api", Namespace: "payments"}})
	for _, want := range []string{`audience "a-api" was named first by an OAuthClient in namespace alpha`,
		`audience "payments-api" was named first by an OAuthClient in namespace payments`, "spec.audiences"} {
		if !strings.Contains(got, want) {
			t.Errorf("message %q lacks %q", got, want)
		}
	}
}

func TestTokenAudiences(t *testing.T) {
	oc := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "shop"}}
	if got := tokenAudiences(oc); !slices.Equal(got, []string{"svc.shop"}) {
		t.Errorf("without audiences: %v, want the client_id", got)
	}
	oc.Spec.Audiences = []string{"payments-api"}
	if got := IndexOAuthClientAudience(oc); !slices.Equal(got, []string{"payments-api"}) {
		t.Errorf("with audiences: %v", got)
	}
}

func TestValidateOAuthClient(t *testing.T) {
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	public := func() *latchkeyv1.OAuthClient {
		return &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "spa", Namespace: "shop"},
			Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypePublic, TokenEndpointAuthMethod: latchkeyv1.AuthMethodNone,
				RedirectURIs: []string{"https://shop.example.com/cb"}}}
	}
	confidential := func() *latchkeyv1.OAuthClient {
		return &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "shop"},
			Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypeConfidential,
				GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials}}}
	}
	cases := []struct {
		name    string
		client  func() *latchkeyv1.OAuthClient
		wantErr string
	}{
		{"a public authorization-code client is valid", public, ""},
		{"a confidential client_credentials client is valid", confidential, ""},
		{"a public client with client_secret_basic is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.TokenEndpointAuthMethod = latchkeyv1.AuthMethodClientSecretBasic
			return c
		}, "public client cannot authenticate"},
		{"a public client with client_credentials is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantClientCredentials}
			return c
		}, "client_credentials needs a confidential client"},
		{"a confidential client with none is refused", func() *latchkeyv1.OAuthClient {
			c := confidential()
			c.Spec.TokenEndpointAuthMethod = latchkeyv1.AuthMethodNone
			return c
		}, "must authenticate"},
		{"the implicit grant is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.GrantTypes = []latchkeyv1.GrantType{"implicit"}
			return c
		}, "not allowed by OAuth 2.1"},
		{"the password grant is refused", func() *latchkeyv1.OAuthClient {
			c := confidential()
			c.Spec.GrantTypes = []latchkeyv1.GrantType{"password"}
			return c
		}, "not allowed by OAuth 2.1"},
		{"authorization_code without a redirect URI is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.RedirectURIs = nil
			return c
		}, "needs at least one redirect URI"},
		{"refresh_token without authorization_code is refused", func() *latchkeyv1.OAuthClient {
			c := confidential()
			c.Spec.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials, latchkeyv1.GrantRefreshToken}
			return c
		}, "refresh_token is only issued"},
		{"private_key_jwt without jwksURI is refused", func() *latchkeyv1.OAuthClient {
			c := confidential()
			c.Spec.TokenEndpointAuthMethod = latchkeyv1.AuthMethodPrivateKeyJWT
			return c
		}, "needs jwksURI"},
		{"an http jwksURI is refused", func() *latchkeyv1.OAuthClient {
			c := confidential()
			c.Spec.TokenEndpointAuthMethod, c.Spec.JWKSURI = latchkeyv1.AuthMethodPrivateKeyJWT, "http://keys.example.com/jwks"
			return c
		}, "https URL"},
		{"an access-token lifetime of 2h is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.AccessTokenLifetime = dur(2 * time.Hour)
			return c
		}, "accessTokenLifetime"},
		{"an idle lifetime beyond the absolute lifetime is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.RefreshTokenPolicy.AbsoluteLifetime, c.Spec.RefreshTokenPolicy.IdleLifetime = dur(time.Hour), dur(2*time.Hour)
			return c
		}, "idleLifetime must not exceed"},
		{"a reuse interval of 10m is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.RefreshTokenPolicy.ReuseInterval = dur(10 * time.Minute)
			return c
		}, "reuseInterval"},
		{"a clientID with a space is refused", func() *latchkeyv1.OAuthClient {
			c := public()
			c.Spec.ClientID = "my client"
			return c
		}, "clientID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validateOAuthClient(tc.client())
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validateOAuthClient() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateRedirectURI(t *testing.T) {
	cases := []struct {
		uri     string
		wantErr string
	}{
		{"https://shop.example.com/callback", ""},
		{"http://127.0.0.1:8080/cb", ""},
		{"http://[::1]/cb", ""},
		{"com.example.app:/cb", ""},
		{"/callback", "absolute"},
		{"https://shop.example.com/cb#frag", "fragment"},
		{"https://*.example.com/cb", "wildcard"},
		{"http://example.com/cb", "loopback"},
		{"http://localhost/cb", "loopback"},
		{"myapp:/cb", "reverse domain"},
		{"https:///cb", "needs a host"},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			err := validateRedirectURI(tc.uri)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validateRedirectURI(%q) = %v, want error containing %q", tc.uri, err, tc.wantErr)
			}
		})
	}
}

func TestPlanClientSecret(t *testing.T) {
	const issuer = "https://id.example.com"
	now := t0.Add(10 * time.Hour)
	secret := func(data map[string]string, ann map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-oauth-client", Annotations: ann}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	current := func(extra map[string]string) map[string]string {
		m := map[string]string{
			latchkeyv1.ClientSecretDataClientID: "shop-web", latchkeyv1.ClientSecretDataClientSecret: "old",
			latchkeyv1.ClientSecretDataIssuer: issuer, latchkeyv1.ClientSecretDataTokenEndpoint: issuer + "/token",
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	handled := func(v string) map[string]string {
		return map[string]string{latchkeyv1.AnnotationSecretRotateRequest: v}
	}
	cases := []struct {
		name     string
		in       clientSecretInput
		wantData map[string]string // keys that must have these values; "" means absent
		want     secretOutcome
	}{
		{
			name:     "an absent Secret is created with all four keys and a fresh secret",
			in:       clientSecretInput{},
			wantData: current(map[string]string{latchkeyv1.ClientSecretDataClientSecret: "fresh"}),
			want:     secretOutcome{Write: true, Generated: true},
		},
		{
			name:     "a Secret deleted after the client had one is recreated with a new secret, never the old one",
			in:       clientSecretInput{HadSecret: true},
			wantData: map[string]string{latchkeyv1.ClientSecretDataClientSecret: "fresh", latchkeyv1.ClientSecretDataPreviousSecret: ""},
			want:     secretOutcome{Write: true, Generated: true, Recreated: true},
		},
		{
			name:     "a client created with the rotate annotation records it without rotating",
			in:       clientSecretInput{RotateRequest: "r1"},
			wantData: map[string]string{latchkeyv1.ClientSecretDataClientSecret: "fresh", latchkeyv1.ClientSecretDataPreviousSecret: ""},
			want:     secretOutcome{Write: true, Generated: true, RotateHandled: "r1"},
		},
		{
			name:     "an up-to-date Secret is left alone",
			in:       clientSecretInput{Existing: secret(current(nil), nil)},
			wantData: current(nil),
		},
		{
			name: "a new rotate annotation moves the secret to previous with an expiry one grace period away",
			in:   clientSecretInput{Existing: secret(current(nil), nil), RotateRequest: "r1"},
			wantData: current(map[string]string{latchkeyv1.ClientSecretDataClientSecret: "fresh", latchkeyv1.ClientSecretDataPreviousSecret: "old",
				latchkeyv1.ClientSecretDataPreviousExpiresAt: now.Add(24 * time.Hour).Format(time.RFC3339)}),
			want: secretOutcome{Write: true, Rotated: true, RotateHandled: "r1", PreviousExpiresAt: now.Add(24 * time.Hour)},
		},
		{
			name:     "the same annotation value recorded on the Secret does not rotate again",
			in:       clientSecretInput{Existing: secret(current(nil), handled("r1")), RotateRequest: "r1"},
			wantData: current(nil),
			want:     secretOutcome{RotateHandled: "r1"},
		},
		{
			name:     "the same annotation value recorded in status does not rotate again",
			in:       clientSecretInput{Existing: secret(current(nil), nil), RotateRequest: "r1", LastRotateRequest: "r1"},
			wantData: current(nil),
		},
		{
			name: "the previous secret is accepted until its expiry",
			in: clientSecretInput{Existing: secret(current(map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: "older",
				latchkeyv1.ClientSecretDataPreviousExpiresAt: now.Add(time.Second).Format(time.RFC3339)}), nil)},
			wantData: map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: "older"},
			want:     secretOutcome{PreviousExpiresAt: now.Add(time.Second)},
		},
		{
			name: "the previous secret is removed at its expiry",
			in: clientSecretInput{Existing: secret(current(map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: "older",
				latchkeyv1.ClientSecretDataPreviousExpiresAt: now.Format(time.RFC3339)}), nil)},
			wantData: current(map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: "", latchkeyv1.ClientSecretDataPreviousExpiresAt: ""}),
			want:     secretOutcome{Write: true, PreviousDropped: true},
		},
		{
			name: "a previous secret whose expiry cannot be read is removed",
			in: clientSecretInput{Existing: secret(current(map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: "older",
				latchkeyv1.ClientSecretDataPreviousExpiresAt: "tomorrow"}), nil)},
			wantData: map[string]string{latchkeyv1.ClientSecretDataPreviousSecret: ""},
			want:     secretOutcome{Write: true, PreviousDropped: true},
		},
		{
			name:     "a changed clientID is corrected in the Secret without touching the secret",
			in:       clientSecretInput{Existing: secret(current(map[string]string{latchkeyv1.ClientSecretDataClientID: "old-id"}), nil)},
			wantData: current(nil),
			want:     secretOutcome{Write: true, Fixed: []string{latchkeyv1.ClientSecretDataClientID}},
		},
		{
			name:     "an empty client-secret is replaced by a fresh one",
			in:       clientSecretInput{Existing: secret(current(map[string]string{latchkeyv1.ClientSecretDataClientSecret: ""}), nil)},
			wantData: current(map[string]string{latchkeyv1.ClientSecretDataClientSecret: "fresh"}),
			want:     secretOutcome{Write: true, Generated: true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.ClientID, in.Issuer, in.Now = "shop-web", issuer, now
			if in.Grace == 0 {
				in.Grace = 24 * time.Hour
			}
			data, ann, out := planClientSecret(in, "fresh")
			for k, v := range tc.wantData {
				got, ok := data[k]
				if v == "" && ok {
					t.Errorf("data[%s] = %q, want absent", k, got)
				}
				if v != "" && string(got) != v {
					t.Errorf("data[%s] = %q, want %q", k, got, v)
				}
			}
			if out.Write != tc.want.Write || out.Generated != tc.want.Generated || out.Recreated != tc.want.Recreated ||
				out.Rotated != tc.want.Rotated || out.PreviousDropped != tc.want.PreviousDropped ||
				out.RotateHandled != tc.want.RotateHandled || !out.PreviousExpiresAt.Equal(tc.want.PreviousExpiresAt) ||
				strings.Join(out.Fixed, ",") != strings.Join(tc.want.Fixed, ",") {
				t.Errorf("outcome = %+v, want %+v", out, tc.want)
			}
			if out.RotateHandled != "" && ann[latchkeyv1.AnnotationSecretRotateRequest] != out.RotateHandled {
				t.Errorf("annotation %s = %q, want %q", latchkeyv1.AnnotationSecretRotateRequest, ann[latchkeyv1.AnnotationSecretRotateRequest], out.RotateHandled)
			}
		})
	}
}

func TestCheckExternalSecret(t *testing.T) {
	labelled := map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeClientCredentials}
	cases := []struct {
		name       string
		labels     map[string]string
		data       map[string]string
		wantReason string
	}{
		{"a labelled Secret with a client secret is found", labelled, map[string]string{"client-secret": "s"}, latchkeyv1.ReasonSecretFound},
		{"a matching client-id is accepted", labelled, map[string]string{"client-secret": "s", "client-id": "svc"}, latchkeyv1.ReasonSecretFound},
		{"a Secret without the label is reported distinctly", nil, map[string]string{"client-secret": "s"}, latchkeyv1.ReasonSecretNotLabelled},
		{"a Secret labelled as another type is not a client Secret", map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey},
			map[string]string{"client-secret": "s"}, latchkeyv1.ReasonSecretNotLabelled},
		{"a Secret without a client secret is invalid", labelled, map[string]string{"client-id": "svc"}, latchkeyv1.ReasonSecretInvalid},
		{"a Secret for another client_id is invalid", labelled, map[string]string{"client-secret": "s", "client-id": "other"}, latchkeyv1.ReasonSecretInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Labels: tc.labels}, Data: map[string][]byte{}}
			for k, v := range tc.data {
				s.Data[k] = []byte(v)
			}
			ok, reason, msg := checkExternalSecret(s, "svc")
			if reason != tc.wantReason || ok != (tc.wantReason == latchkeyv1.ReasonSecretFound) {
				t.Errorf("checkExternalSecret() = %v, %s (%s), want %s", ok, reason, msg, tc.wantReason)
			}
			if strings.Contains(msg, "\"s\"") {
				t.Errorf("message leaks the secret: %s", msg)
			}
		})
	}
}

func TestNewClientSecret(t *testing.T) {
	a, err := newClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newClientSecret()
	if len(a) != 43 || strings.ContainsAny(a, "+/=") || a == b {
		t.Errorf("newClientSecret() = %q (len %d), want 43 base64url characters, different each time", a, len(a))
	}
}

func TestLabelValue(t *testing.T) {
	if got := labelValue("web"); got != "web" {
		t.Errorf("labelValue(web) = %q", got)
	}
	long := strings.Repeat("a", 100)
	if got := labelValue(long); len(got) > 63 || got == labelValue(long+"b") {
		t.Errorf("labelValue(long) = %q: want at most 63 characters, distinct per name", got)
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
