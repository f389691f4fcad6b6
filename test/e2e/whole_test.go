package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
	"github.com/latchkey-dev/latchkey/verifier"
)

// TestWholeSystem is issue 5's end-to-end test: the chart installed into a real API server, a
// real Redis, and the binary started with the chart's Deployment arguments.
//
//   - The chart's SigningKey becomes Ready and its JWKS ConfigMap appears.
//   - An OAuthClient (confidential, client_credentials, Generated secret) gets its Secret with
//     client-id, client-secret, issuer and token-endpoint.
//   - A token obtained with golang.org/x/oauth2 verifies against the JWKS ConfigMap (as a
//     resource server that mounts it would) and via verifier.New against the issuer.
//   - A forced rotation pre-publishes the new key: it is in the ConfigMap before any token
//     carries it, tokens carry it only from its recorded activation on, and the old token keeps
//     verifying (SECURITY-CASES 71).
//   - A client secret rotation accepts both secrets during the grace period and only the new
//     one after it.
//
// The chart values it changes: prePublish 5s (so the rotation completes in seconds; the CRD's
// smallest rotationInterval is 1h) and a 20s client secret grace period.
func TestWholeSystem(t *testing.T) {
	t.Parallel()
	const gracePeriod = 20 * time.Second
	s := newSystem(t, systemOptions{
		signingKey: map[string]any{"prePublish": "5s"},
		values:     map[string]any{"clientSecretGracePeriod": gracePeriod.String()},
	})
	ctx := t.Context()
	b := s.start("replica-0", binaryOptions{})

	// The chart's SigningKey becomes Ready, and its JWKS ConfigMap publishes the Active key.
	var firstKid string
	eventually(t, 60*time.Second, func() error {
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			return err
		}
		c, err := readyCondition(sk.Status.Conditions)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionTrue || c.ObservedGeneration != sk.Generation {
			return fmt.Errorf("SigningKey Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		}
		if sk.Status.JWKSConfigMapName != defaultKey+latchkeyv1.JWKSConfigMapSuffix {
			return fmt.Errorf("status.jwksConfigMapName = %q", sk.Status.JWKSConfigMapName)
		}
		doc, err := s.jwksConfigMap(defaultKey)
		if err != nil {
			return err
		}
		published, err := kids(doc)
		if err != nil {
			return err
		}
		if sk.Status.ActiveKeyID == "" || !slices.Contains(published, sk.Status.ActiveKeyID) {
			return fmt.Errorf("active key %q not in the JWKS ConfigMap %v", sk.Status.ActiveKeyID, published)
		}
		firstKid = sk.Status.ActiveKeyID
		return nil
	})
	b.waitReady(30 * time.Second)

	// Discovery is what clients and the verifier start from.
	var md struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	code, body, err := b.get("/.well-known/oauth-authorization-server")
	if err != nil || code != http.StatusOK {
		t.Fatalf("discovery: %d %v", code, err)
	}
	if err := json.Unmarshal(body, &md); err != nil {
		t.Fatal(err)
	}
	if md.Issuer != s.issuer {
		t.Fatalf("discovery issuer %q, want %q", md.Issuer, s.issuer)
	}

	// An OAuthClient gets its Secret.
	ns := s.clientNS[0]
	oc := s.createClient(confidentialClient(ns, "orders"))
	creds := s.waitCredentials(ns, oc.Name)
	if want := "orders." + ns; creds.ClientID != want {
		t.Errorf("client-id %q, want the default %q", creds.ClientID, want)
	}
	if creds.Issuer != s.issuer || creds.TokenEndpoint != md.TokenEndpoint {
		t.Errorf("Secret says issuer %q, token-endpoint %q; discovery says %q, %q", creds.Issuer, creds.TokenEndpoint, md.Issuer, md.TokenEndpoint)
	}
	var sec corev1.Secret
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: oc.EffectiveSecretName()}, &sec); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(&sec); ref == nil || ref.Kind != "OAuthClient" || ref.Name != oc.Name {
		t.Errorf("client Secret is controlled by %+v, want the OAuthClient", ref)
	}
	if sec.Labels[latchkeyv1.LabelSecretType] != latchkeyv1.SecretTypeClientCredentials {
		t.Errorf("client Secret labels %v lack %s=%s", sec.Labels, latchkeyv1.LabelSecretType, latchkeyv1.SecretTypeClientCredentials)
	}

	// A real OAuth client library gets a token from the endpoint the Secret names.
	cc := clientcredentials.Config{
		ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, TokenURL: creds.TokenEndpoint,
		Scopes: []string{"e2e.read"}, AuthStyle: oauth2.AuthStyleInHeader,
	}
	octx := context.WithValue(ctx, oauth2.HTTPClient, s.http)
	var tok0 string
	eventually(t, 30*time.Second, func() error {
		tok, err := cc.Token(octx)
		if err != nil {
			return err
		}
		if tok.RefreshToken != "" {
			t.Errorf("a client_credentials response carries a refresh token (RFC 6749 §4.4.3)")
		}
		tok0 = tok.AccessToken
		s.leaks.add("access token", tok0)
		return nil
	})
	if kid := kidOf(t, tok0); kid != firstKid {
		t.Errorf("token signed with kid %s, want the Active key %s", kid, firstKid)
	}

	// It verifies against the JWKS ConfigMap and against the issuer.
	doc, err := s.jwksConfigMap(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.verifyWithJWKS(doc, tok0); err != nil {
		t.Fatalf("token does not verify against the JWKS ConfigMap: %v", err)
	}
	v, err := verifier.New(ctx, s.issuer, verifier.WithAudience(audience))
	if err != nil {
		t.Fatalf("verifier.New against the issuer: %v", err)
	}
	claims, err := v.Verify(ctx, tok0)
	if err != nil {
		t.Fatalf("token does not verify against the issuer: %v", err)
	}
	if claims.ClientID() != creds.ClientID || !claims.IsClient() || !claims.HasScope("e2e.read") || claims.Issuer() != s.issuer {
		t.Errorf("claims: client_id %q, sub %q, scope %v, iss %q", claims.ClientID(), claims.Subject(), claims.Scopes(), claims.Issuer())
	}

	t.Run("forced key rotation", func(t *testing.T) {
		forcedRotation(t, s, b, creds, tok0, firstKid)
	})
	t.Run("client secret rotation", func(t *testing.T) {
		clientSecretRotation(t, s, b, oc, creds, gracePeriod)
	})
}

// forcedRotation: the rotate annotation makes a new key that is published first, signs after
// prePublish, and leaves the old key verifying.
func forcedRotation(t *testing.T, s *system, b *binary, creds credentials, oldToken, oldKid string) {
	ctx := t.Context()
	sk, err := s.signingKey(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := annotate(ctx, sk, latchkeyv1.AnnotationRotate, "e2e-1"); err != nil {
		t.Fatal(err)
	}

	// The new key appears as Next, in the ConfigMap, while the old one still signs.
	var newKid string
	eventually(t, 30*time.Second, func() error {
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			return err
		}
		if sk.Status.LastRotateRequest != "e2e-1" {
			return fmt.Errorf("rotation not handled yet (lastRotateRequest %q)", sk.Status.LastRotateRequest)
		}
		for _, k := range sk.Status.Keys {
			if k.KeyID != oldKid {
				newKid = k.KeyID
			}
		}
		if newKid == "" {
			return fmt.Errorf("no new key in status: %+v", sk.Status.Keys)
		}
		return nil
	})

	// Until the new key signs, every token carries a kid that the ConfigMap published before
	// the token was requested; then tokens move to the new key.
	var tokens []string
	eventually(t, 60*time.Second, func() error {
		doc, err := s.jwksConfigMap(defaultKey)
		if err != nil {
			return err
		}
		published, err := kids(doc)
		if err != nil {
			return err
		}
		tok := b.mustToken(creds)
		tokens = append(tokens, tok)
		kid := kidOf(t, tok)
		if !slices.Contains(published, kid) {
			t.Fatalf("a token is signed with kid %s, which the JWKS ConfigMap did not publish before it was issued (%v)", kid, published)
		}
		if kid != newKid {
			return fmt.Errorf("tokens still signed with %s", kid)
		}
		return nil
	})
	newToken := tokens[len(tokens)-1]

	// The new key signs no earlier than the activation its Secret records, and that activation
	// is prePublish after the key was created.
	secrets, err := s.keySecrets(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets {
		if string(sec.Data[latchkeyv1.KeyDataKeyID]) != newKid {
			continue
		}
		tl, err := keymaterial.ParseTimeline(&sec)
		if err != nil {
			t.Fatal(err)
		}
		if got := tl.ActivatesAt.Sub(tl.CreatedAt); got < 5*time.Second {
			t.Errorf("the new key activates %v after its creation, want prePublish (5s)", got)
		}
		claims := verifyClaims(t, s, newToken)
		if claims.IssuedAt().Before(tl.ActivatesAt) {
			t.Errorf("a token with the new kid was issued at %v, before the key's activation at %v", claims.IssuedAt(), tl.ActivatesAt)
		}
	}

	// Status: exactly one Active key (the new one); the old one is Retired and still published.
	eventually(t, 30*time.Second, func() error {
		sk, err := s.signingKey(defaultKey)
		if err != nil {
			return err
		}
		if a := activeKeys(sk); len(a) != 1 || a[0] != newKid || sk.Status.ActiveKeyID != newKid {
			return fmt.Errorf("active keys %v (activeKeyID %s), want [%s]", a, sk.Status.ActiveKeyID, newKid)
		}
		for _, k := range sk.Status.Keys {
			if k.KeyID == oldKid && k.State != latchkeyv1.KeyStateRetired {
				return fmt.Errorf("old key %s is %s, want Retired", oldKid, k.State)
			}
		}
		return nil
	})
	doc, err := s.jwksConfigMap(defaultKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range append(tokens, oldToken) {
		if err := s.verifyWithJWKS(doc, tok); err != nil {
			t.Errorf("after the rotation a token (kid %s) does not verify against the ConfigMap: %v", kidOf(t, tok), err)
		}
		if err := s.verifyWithIssuer(tok); err != nil {
			t.Errorf("after the rotation a token (kid %s) does not verify against the issuer: %v", kidOf(t, tok), err)
		}
	}
}

// clientSecretRotation: rotate-secret gives a new secret, keeps the old one valid for the
// grace period recorded in the Secret, and rejects it with invalid_client afterwards.
func clientSecretRotation(t *testing.T, s *system, b *binary, oc *latchkeyv1.OAuthClient, old credentials, grace time.Duration) {
	ctx := t.Context()
	if err := annotate(ctx, oc, latchkeyv1.AnnotationRotateSecret, "e2e-1"); err != nil {
		t.Fatal(err)
	}
	var cur credentials
	var expires time.Time
	eventually(t, 30*time.Second, func() error {
		c, err := s.readCredentials(oc.Namespace, oc.EffectiveSecretName())
		if err != nil {
			return err
		}
		if c.ClientSecret == old.ClientSecret {
			return fmt.Errorf("client secret not rotated yet")
		}
		var sec corev1.Secret
		if err := admin.Get(ctx, client.ObjectKeyFromObject(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: oc.Namespace, Name: oc.EffectiveSecretName()}}), &sec); err != nil {
			return err
		}
		if string(sec.Data[latchkeyv1.ClientSecretDataPreviousSecret]) != old.ClientSecret {
			return fmt.Errorf("the Secret does not keep the previous secret")
		}
		expires, err = time.Parse(time.RFC3339, string(sec.Data[latchkeyv1.ClientSecretDataPreviousExpiresAt]))
		if err != nil {
			return err
		}
		cur = c
		return nil
	})
	if d := time.Until(expires); d > grace || d < grace-10*time.Second {
		t.Fatalf("the previous secret expires in %v, want about the %v grace period", d, grace)
	}
	if cur.ClientID != old.ClientID {
		t.Fatalf("rotation changed the client_id from %q to %q", old.ClientID, cur.ClientID)
	}

	// During the grace period both secrets work (the server's cache may take a moment to see
	// the new one).
	b.eventuallyToken(cur, 15*time.Second)
	b.mustToken(old)
	b.mustToken(cur)

	// After it, only the new one. The old one is accepted until the recorded expiry and
	// answered invalid_client, never anything else, once it has passed.
	eventually(t, grace+30*time.Second, func() error {
		r, err := b.token(old.ClientID, old.ClientSecret)
		if err != nil {
			return err
		}
		now := time.Now()
		switch r.Status {
		case http.StatusOK:
			if now.After(expires.Add(2 * time.Second)) {
				t.Fatalf("the old secret got a token at %v, after its grace period ended at %v", now, expires)
			}
			return fmt.Errorf("old secret still accepted")
		case http.StatusUnauthorized:
			if r.Error != "invalid_client" {
				t.Fatalf("old secret after the grace period: %v, want invalid_client", r)
			}
			if now.Before(expires.Add(-time.Second)) {
				t.Fatalf("the old secret was refused at %v, before its grace period ended at %v", now, expires)
			}
			return nil
		default:
			t.Fatalf("old secret: %v, want 200 during the grace period and 401 invalid_client after it", r)
			return nil
		}
	})
	if r, err := b.token(old.ClientID, old.ClientSecret); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("old secret after the grace period: %v %v", r, err)
	}
	b.mustToken(cur)
}

// verifyClaims verifies a token against the issuer and returns its claims.
func verifyClaims(t *testing.T, s *system, token string) *verifier.Claims {
	t.Helper()
	v, err := verifier.New(t.Context(), s.issuer, verifier.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
