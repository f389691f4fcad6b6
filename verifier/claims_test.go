package verifier_test

import (
	"slices"
	"testing"
)

func TestClaimsAccessors(t *testing.T) {
	iss := newTestIssuer(t, testKey(t, "ES256"))
	v := newVerifier(t, iss, newClock())
	es := testKey(t, "ES256")

	c := acceptToken(t, v, mint(t, es, with(iss.claims(), map[string]any{
		"scope": "openid  notes.read notes.write", "aud": []string{"x", testAudience}, "nbf": t0.Unix(), "tenant": "acme",
	}), nil))
	if got := c.Scopes(); !slices.Equal(got, []string{"openid", "notes.read", "notes.write"}) {
		t.Fatalf("Scopes() = %q", got)
	}
	for scope, want := range map[string]bool{"notes.read": true, "notes.write": true, "notes": false, "NOTES.READ": false, "": false, "openid notes.read": false} {
		if c.HasScope(scope) != want {
			t.Errorf("HasScope(%q) = %v", scope, !want)
		}
	}
	for role, want := range map[string]bool{"admin": true, "user": true, "Admin": false, "": false} {
		if c.HasRole(role) != want {
			t.Errorf("HasRole(%q) = %v", role, !want)
		}
	}
	if !slices.Equal(c.Audience(), []string{"x", testAudience}) || !c.NotBefore().Equal(t0) {
		t.Fatalf("Audience() = %q, NotBefore() = %v", c.Audience(), c.NotBefore())
	}
	// Accessors return copies.
	c.Roles()[0] = "root"
	c.Audience()[0] = "evil"
	if c.Roles()[0] != "admin" || c.Audience()[0] != "x" {
		t.Fatal("an accessor exposed internal state")
	}
	raw := c.Raw()
	if raw["tenant"] != "acme" || raw["sub"] != "alice" {
		t.Fatalf("Raw() = %v", raw)
	}
	raw["sub"] = "mallory"
	if c.Subject() != "alice" || c.Raw()["sub"] != "alice" {
		t.Fatal("Raw() exposed internal state")
	}

	plain := acceptToken(t, v, mint(t, es, iss.claims(), nil))
	if !plain.NotBefore().IsZero() {
		t.Fatalf("NotBefore() without nbf = %v", plain.NotBefore())
	}

	clientCases := []struct {
		name   string
		claims map[string]any
		want   bool
	}{
		{"a client_credentials token is a client", iss.clientClaims(), true},
		{"a user token is not a client", iss.claims(), false},
		{"a client: subject with roles is not a client", with(iss.clientClaims(), map[string]any{"roles": []string{"admin"}}), false},
		{"a client: subject for another client_id is not a client", with(iss.clientClaims(), map[string]any{"client_id": "other"}), false},
		{"sub client:<client_id> without roles is a client (no user can have that name)", with(iss.claims(), map[string]any{"sub": "client:demo-spa", "roles": nil}), true},
	}
	for _, tc := range clientCases {
		t.Run(tc.name, func(t *testing.T) {
			got := acceptToken(t, v, mint(t, es, tc.claims, nil)).IsClient()
			if got != tc.want {
				t.Fatalf("IsClient() = %v", got)
			}
		})
	}
}
