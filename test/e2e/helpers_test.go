package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/verifier"
)

// audience is the aud of every test client's tokens: the resource server the verifier plays.
const audience = "https://api.e2e.example"

// defaultKey is the SigningKey the chart creates and the binary signs with (--signing-key).
const defaultKey = "default"

// confidentialClient is a client_credentials client with a Generated secret, the shape a
// workload that calls an API would register.
func confidentialClient(ns, name string) *latchkeyv1.OAuthClient {
	return &latchkeyv1.OAuthClient{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: latchkeyv1.OAuthClientSpec{
			Type:       latchkeyv1.ClientTypeConfidential,
			GrantTypes: []latchkeyv1.GrantType{latchkeyv1.GrantClientCredentials},
			Scopes:     []string{"e2e.read"},
			Audiences:  []string{audience},
		},
	}
}

// createClient applies an OAuthClient, as a tenant would with kubectl.
func (s *system) createClient(c *latchkeyv1.OAuthClient) *latchkeyv1.OAuthClient {
	s.t.Helper()
	if err := admin.Create(s.t.Context(), c); err != nil {
		s.t.Fatalf("create OAuthClient %s/%s: %v", c.Namespace, c.Name, err)
	}
	return c
}

// credentials are what a workload reads from its client Secret.
type credentials struct {
	ClientID, ClientSecret, Issuer, TokenEndpoint string
}

// waitCredentials waits until the OAuthClient is Ready and its Secret holds credentials, and
// returns them. The secret joins the leak guard.
func (s *system) waitCredentials(ns, name string) credentials {
	s.t.Helper()
	var creds credentials
	eventually(s.t, 30*time.Second, func() error {
		var oc latchkeyv1.OAuthClient
		if err := admin.Get(s.t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &oc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(oc.Status.Conditions, latchkeyv1.ConditionReady) {
			return fmt.Errorf("OAuthClient %s/%s not Ready: %+v", ns, name, oc.Status.Conditions)
		}
		c, err := s.readCredentials(ns, oc.EffectiveSecretName())
		if err != nil {
			return err
		}
		creds = c
		return nil
	})
	return creds
}

// readCredentials reads a client Secret.
func (s *system) readCredentials(ns, secretName string) (credentials, error) {
	var sec corev1.Secret
	if err := admin.Get(s.t.Context(), client.ObjectKey{Namespace: ns, Name: secretName}, &sec); err != nil {
		return credentials{}, err
	}
	c := credentials{
		ClientID:      string(sec.Data[latchkeyv1.ClientSecretDataClientID]),
		ClientSecret:  string(sec.Data[latchkeyv1.ClientSecretDataClientSecret]),
		Issuer:        string(sec.Data[latchkeyv1.ClientSecretDataIssuer]),
		TokenEndpoint: string(sec.Data[latchkeyv1.ClientSecretDataTokenEndpoint]),
	}
	if c.ClientID == "" || c.ClientSecret == "" {
		return credentials{}, fmt.Errorf("secret %s/%s has no credentials yet", ns, secretName)
	}
	s.leaks.add("client secret", c.ClientSecret)
	if prev := string(sec.Data[latchkeyv1.ClientSecretDataPreviousSecret]); prev != "" {
		s.leaks.add("previous client secret", prev)
	}
	return c, nil
}

// tokenReply is a token endpoint response, success or error (RFC 6749 §5.1, §5.2).
type tokenReply struct {
	Status           int
	Header           http.Header
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (r tokenReply) String() string {
	if r.Error != "" {
		return fmt.Sprintf("%d %s (%s)", r.Status, r.Error, r.ErrorDescription)
	}
	return fmt.Sprintf("%d token_type=%s", r.Status, r.TokenType)
}

// token asks the binary for a client_credentials token with client_secret_basic. A transport
// error is returned as is; any HTTP answer is a tokenReply.
func (b *binary) token(clientID, secret string) (tokenReply, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequest(http.MethodPost, b.url+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenReply{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := b.sys.http.Do(req)
	if err != nil {
		return tokenReply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return tokenReply{}, err
	}
	r := tokenReply{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("token endpoint answered %d with a body that is not JSON: %q", resp.StatusCode, body)
	}
	b.sys.leaks.add("access token", r.AccessToken)
	return r, nil
}

// mustToken gets a token or fails the test.
func (b *binary) mustToken(c credentials) string {
	b.sys.t.Helper()
	r, err := b.token(c.ClientID, c.ClientSecret)
	if err != nil {
		b.sys.t.Fatalf("%s: token for %s: %v", b.name, c.ClientID, err)
	}
	if r.Status != http.StatusOK || r.AccessToken == "" {
		b.sys.t.Fatalf("%s: token for %s: %v", b.name, c.ClientID, r)
	}
	return r.AccessToken
}

// eventuallyToken polls until the binary issues a token (the server's cache may lag the
// controller's writes by a moment).
func (b *binary) eventuallyToken(c credentials, timeout time.Duration) string {
	b.sys.t.Helper()
	var tok string
	eventually(b.sys.t, timeout, func() error {
		r, err := b.token(c.ClientID, c.ClientSecret)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s: %v", b.name, r)
		}
		tok = r.AccessToken
		return nil
	})
	return tok
}

// kidOf reads the kid from a JWS compact token's protected header.
func kidOf(t interface{ Fatalf(string, ...any) }, token string) string {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		t.Fatalf("not a JWS: %d bytes", len(token))
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("decode JWS header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("parse JWS header: %v", err)
	}
	return h.Kid
}

// verifyWithJWKS verifies a token the way a resource server that mounts the JWKS ConfigMap
// does: verifier.WithJWKSFile over the document.
func (s *system) verifyWithJWKS(doc []byte, token string) error {
	path := filepath.Join(s.t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Second)
	defer cancel()
	v, err := verifier.New(ctx, s.issuer, verifier.WithAudience(audience), verifier.WithJWKSFile(path))
	if err != nil {
		return err
	}
	_, err = v.Verify(ctx, token)
	return err
}

// verifyWithIssuer verifies a token with a fresh verifier.New against the issuer: discovery,
// then the JWKS from jwks_uri, as a resource server starting now would.
func (s *system) verifyWithIssuer(token string) error {
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Second)
	defer cancel()
	v, err := verifier.New(ctx, s.issuer, verifier.WithAudience(audience))
	if err != nil {
		return err
	}
	_, err = v.Verify(ctx, token)
	return err
}

// signingKey reads a SigningKey of the system.
func (s *system) signingKey(name string) (*latchkeyv1.SigningKey, error) {
	var sk latchkeyv1.SigningKey
	err := admin.Get(s.t.Context(), client.ObjectKey{Namespace: s.ns, Name: name}, &sk)
	return &sk, err
}

// jwksConfigMap returns the jwks.json of a SigningKey's ConfigMap.
func (s *system) jwksConfigMap(name string) ([]byte, error) {
	var cm corev1.ConfigMap
	if err := admin.Get(s.t.Context(), client.ObjectKey{Namespace: s.ns, Name: name + latchkeyv1.JWKSConfigMapSuffix}, &cm); err != nil {
		return nil, err
	}
	doc, ok := cm.Data[latchkeyv1.JWKSDataKey]
	if !ok {
		return nil, fmt.Errorf("configmap %s has no %s", cm.Name, latchkeyv1.JWKSDataKey)
	}
	return []byte(doc), nil
}

// kids lists the kids of a JWKS document, and fails on a duplicate or private member
// (SECURITY-CASES 70).
func kids(doc []byte) ([]string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	var out []string
	for _, k := range set.Keys {
		if slices.Contains(out, k.KeyID) {
			return nil, fmt.Errorf("duplicate kid %s in the JWKS", k.KeyID)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("key %s in the JWKS is not public", k.KeyID)
		}
		out = append(out, k.KeyID)
	}
	return out, nil
}

// keySecrets lists the key Secrets of a SigningKey.
func (s *system) keySecrets(name string) ([]corev1.Secret, error) {
	var list corev1.SecretList
	err := admin.List(s.t.Context(), &list, client.InNamespace(s.ns), client.MatchingLabels{
		latchkeyv1.LabelSigningKey: name, latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey,
	})
	return list.Items, err
}

// annotate sets an annotation with a merge patch, as `kubectl annotate --overwrite` does.
func annotate(ctx context.Context, obj client.Object, key, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	return admin.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// events lists the events.k8s.io Events about an object with a reason.
func events(ctx context.Context, ns, kind, name, reason string) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := admin.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out, nil
}

// activeKeys returns the kids that status.keys reports Active.
func activeKeys(sk *latchkeyv1.SigningKey) []string {
	var out []string
	for _, k := range sk.Status.Keys {
		if k.State == latchkeyv1.KeyStateActive {
			out = append(out, k.KeyID)
		}
	}
	return out
}

// readyCondition is the SigningKey's or OAuthClient's Ready condition, or an error if it has
// none yet.
func readyCondition(conds []metav1.Condition) (*metav1.Condition, error) {
	c := meta.FindStatusCondition(conds, latchkeyv1.ConditionReady)
	if c == nil {
		return nil, errors.New("no Ready condition yet")
	}
	return c, nil
}
