package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// One case per validation rule (CEL XValidation and enum) of api/v1alpha1: the API server must
// refuse at `kubectl apply` what OAuth 2.1 forbids, with the rule's message, and accept the
// borderline cases that are allowed.

func TestCELValidation(t *testing.T) {
	ns := newNamespace(t)
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	// public is a valid public client; confidential a valid client_credentials client.
	public := func(mutate func(*latchkeyv1.OAuthClientSpec)) client.Object {
		spec := latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypePublic, TokenEndpointAuthMethod: latchkeyv1.AuthMethodNone,
			RedirectURIs: []string{"https://shop.example.com/callback"}}
		if mutate != nil {
			mutate(&spec)
		}
		return &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{GenerateName: "cel-", Namespace: ns}, Spec: spec}
	}
	confidential := func(mutate func(*latchkeyv1.OAuthClientSpec)) client.Object {
		spec := latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypeConfidential,
			GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials}}
		if mutate != nil {
			mutate(&spec)
		}
		return &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{GenerateName: "cel-", Namespace: ns}, Spec: spec}
	}
	redirect := func(uri string) client.Object {
		return public(func(s *latchkeyv1.OAuthClientSpec) { s.RedirectURIs = []string{uri} })
	}
	signingKey := func(name string, mutate func(*latchkeyv1.SigningKeySpec)) client.Object {
		sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		if name == "" {
			sk.GenerateName = "cel-"
		}
		if mutate != nil {
			mutate(&sk.Spec)
		}
		return sk
	}

	cases := []struct {
		name    string
		obj     client.Object
		wantErr string // "" means accepted
	}{
		// OAuthClient: who may authenticate how (OAuth 2.1 §2.1, §2.4).
		{"a public client with client_secret_basic is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod = latchkeyv1.AuthMethodClientSecretBasic
		}), "a public client cannot authenticate: tokenEndpointAuthMethod must be none"},
		{"a public client with client_secret_post is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod = latchkeyv1.AuthMethodClientSecretPost
		}), "a public client cannot authenticate: tokenEndpointAuthMethod must be none"},
		{"a public client with private_key_jwt is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod, s.JWKSURI = latchkeyv1.AuthMethodPrivateKeyJWT, "https://app.example.com/jwks"
		}), "a public client cannot authenticate: tokenEndpointAuthMethod must be none"},
		{"a public client with client_credentials is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantClientCredentials}
		}), "client_credentials needs a confidential client (OAuth 2.1 §4.2)"},
		{"a confidential client with none is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod = latchkeyv1.AuthMethodNone
		}), "a confidential client must authenticate: tokenEndpointAuthMethod cannot be none"},
		{"an unknown client type is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.Type = "trusted" }), `Unsupported value: "trusted"`},
		{"client_secret_jwt is not an accepted method", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod = "client_secret_jwt"
		}), `Unsupported value: "client_secret_jwt"`},
		{"private_key_jwt without jwksURI is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod = latchkeyv1.AuthMethodPrivateKeyJWT
		}), "private_key_jwt needs jwksURI"},
		{"jwksURI without private_key_jwt is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.JWKSURI = "https://app.example.com/jwks"
		}), "jwksURI is only used with private_key_jwt"},
		{"an http jwksURI is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.TokenEndpointAuthMethod, s.JWKSURI = latchkeyv1.AuthMethodPrivateKeyJWT, "http://app.example.com/jwks"
		}), "jwksURI must be an https URL without a fragment"},
		{"an unknown secretSource is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) { s.SecretSource = "Vault" }), `Unsupported value: "Vault"`},
		{"a clientID with a space is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.ClientID = "my client" }), "spec.clientID"},

		// Grants (OAuth 2.1 §10.1, §10.2: no implicit, no password).
		{"the implicit grant is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{"implicit"}
		}), `Unsupported value: "implicit"`},
		{"the password grant is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{"password"}
		}), `Unsupported value: "password"`},
		{"authorization_code without a redirect URI is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.RedirectURIs = nil }),
			"authorization_code needs at least one redirect URI"},
		{"refresh_token without authorization_code is refused", confidential(func(s *latchkeyv1.OAuthClientSpec) {
			s.GrantTypes = []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials, latchkeyv1.GrantRefreshToken}
		}), "refresh_token is only issued with authorization_code"},

		// Redirect URIs (OAuth 2.1 §2.3.1, RFC 8252 §7).
		{"a relative redirect URI is refused", redirect("/callback"), "a redirect URI must be absolute and contain no spaces"},
		{"a redirect URI with a fragment is refused", redirect("https://shop.example.com/cb#top"), "a redirect URI must not contain a fragment"},
		{"a wildcard redirect URI is refused", redirect("https://*.example.com/cb"), "a redirect URI must not contain a wildcard"},
		{"an http redirect to a public host is refused", redirect("http://example.com/cb"), "http is only allowed for a loopback redirect (127.0.0.1 or [::1])"},
		{"an http redirect to localhost is refused (RFC 8252 §8.3)", redirect("http://localhost/cb"), "http is only allowed for a loopback redirect"},
		{"a private-use scheme without a dot is refused", redirect("myapp:/cb"), "a private-use URI scheme must be a reverse domain name"},
		{"an https redirect without a host is refused", redirect("https:///cb"), "an https redirect URI needs a host"},
		{"an http loopback redirect with a port is accepted", redirect("http://127.0.0.1:8080/cb"), ""},
		{"an IPv6 loopback redirect is accepted", redirect("http://[::1]/cb"), ""},
		{"a reverse-domain private-use scheme is accepted", redirect("com.example.app:/cb"), ""},
		{"an https redirect is accepted", redirect("https://shop.example.com/callback"), ""},

		// Rate limit.
		{"a rate-limit window of 0s is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.RateLimit.Window = d("0s") }),
			"window must be between 1s and 1h"},
		{"a rate-limit window of 2h is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.RateLimit.Window = d("2h") }),
			"window must be between 1s and 1h"},
		{"a negative request limit is refused", public(func(s *latchkeyv1.OAuthClientSpec) { n := int32(-1); s.RateLimit.Requests = &n }),
			"should be greater than or equal to 0"},
		{"a request limit of 0 (off) is accepted", public(func(s *latchkeyv1.OAuthClientSpec) { n := int32(0); s.RateLimit.Requests = &n }), ""},

		// Lifetimes.
		{"an access-token lifetime of 2h is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.AccessTokenLifetime = d("2h") }),
			"accessTokenLifetime must be between 1m and 1h"},
		{"an access-token lifetime of 10s is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.AccessTokenLifetime = d("10s") }),
			"accessTokenLifetime must be between 1m and 1h"},
		{"an idle lifetime longer than the absolute lifetime is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.RefreshTokenPolicy.AbsoluteLifetime, s.RefreshTokenPolicy.IdleLifetime = d("1h"), d("2h")
		}), "idleLifetime must not exceed absoluteLifetime"},
		{"an absolute lifetime over 90 days is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.RefreshTokenPolicy.AbsoluteLifetime = d("2200h")
		}), "absoluteLifetime must be between 1m and 2160h (90 days)"},
		{"an idle lifetime under a minute is refused", public(func(s *latchkeyv1.OAuthClientSpec) {
			s.RefreshTokenPolicy.IdleLifetime = d("30s")
		}), "idleLifetime must be between 1m and 2160h (90 days)"},
		{"a reuse interval of 10m is refused", public(func(s *latchkeyv1.OAuthClientSpec) { s.RefreshTokenPolicy.ReuseInterval = d("10m") }),
			"reuseInterval must be between 0s and 5m"},
		{"a valid confidential client is accepted", confidential(nil), ""},

		// SigningKey.
		{"a rotation interval of 30m is refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) {
			s.RotationInterval, s.PrePublish = d("30m"), d("0s")
		}), "rotationInterval must be at least 1h"},
		{"a retention of 10m is refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) { s.Retention = d("10m") }),
			"retention must be at least 1h, the longest access-token lifetime"},
		{"a pre-publication as long as the rotation interval is refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) {
			s.RotationInterval, s.PrePublish = d("2h"), d("2h")
		}), "prePublish must be shorter than rotationInterval"},
		{"a negative pre-publication is refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) { s.PrePublish = d("-1h") }),
			"prePublish must not be negative"},
		{"HS256 is refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) { s.Algorithm = "HS256" }), `Unsupported value: "HS256"`},
		{"a SigningKey name longer than a label value is refused", signingKey(strings.Repeat("k", 64), nil),
			"a SigningKey name must be at most 63 characters"},
		{"more than 64 revoked kids are refused", signingKey("", func(s *latchkeyv1.SigningKeySpec) {
			for i := range 65 {
				s.RevokedKeyIDs = append(s.RevokedKeyIDs, strings.Repeat("x", i+1))
			}
		}), "spec.revokedKeyIDs: Too many"},
		{"a SigningKey with the defaults is accepted", signingKey("", nil), ""},
		{"an EdDSA SigningKey is accepted", signingKey("", func(s *latchkeyv1.SigningKeySpec) { s.Algorithm = latchkeyv1.AlgorithmEdDSA }), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tc.obj)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("create: %v, want accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("create succeeded, want %q", tc.wantErr)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("create: %v\nwant an Invalid error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCRDDefaults(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if err := k8s.Create(ctx, sk); err != nil {
		t.Fatal(err)
	}
	if sk.Spec.Algorithm != latchkeyv1.AlgorithmES256 || sk.RotationInterval() != 720*time.Hour || sk.PrePublish() != time.Hour ||
		sk.Retention() != 24*time.Hour || sk.Spec.RotationInterval == nil {
		t.Errorf("SigningKey defaults = %+v", sk.Spec)
	}
	oc := &latchkeyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: ns},
		Spec: latchkeyv1.OAuthClientSpec{Type: latchkeyv1.ClientTypeConfidential, RedirectURIs: []string{"https://a.example.com/cb"}}}
	if err := k8s.Create(ctx, oc); err != nil {
		t.Fatal(err)
	}
	if oc.Spec.TokenEndpointAuthMethod != latchkeyv1.AuthMethodClientSecretBasic || oc.Spec.SecretSource != latchkeyv1.SecretSourceGenerated ||
		len(oc.Spec.GrantTypes) != 2 || oc.AccessTokenLifetime() != 15*time.Minute || oc.Spec.AccessTokenLifetime == nil ||
		oc.Spec.RateLimit.Requests == nil || *oc.Spec.RateLimit.Requests != latchkeyv1.DefaultRateLimitRequests ||
		oc.Spec.RateLimit.Window == nil || oc.RateLimitWindow() != latchkeyv1.DefaultRateLimitWindow {
		t.Errorf("OAuthClient defaults = %+v", oc.Spec)
	}
}
