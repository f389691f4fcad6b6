package controllers

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// This file holds the OAuthClient decisions as pure functions: who owns a contested client_id,
// whether a spec is acceptable, what a Generated credentials Secret must contain, and whether an
// External one is usable. The reconciler reads, calls these, and writes.

// claimant is an OAuthClient that claims a client_id.
type claimant struct {
	Namespace, Name string
	UID             types.UID
	Created         time.Time
}

func claimantOf(c *latchkeyv1.OAuthClient) claimant {
	return claimant{Namespace: c.Namespace, Name: c.Name, UID: c.UID, Created: c.CreationTimestamp.Time}
}

// clientIDWinner picks the OAuthClient that owns a client_id: the oldest (creationTimestamp),
// then the smaller UID when two were created in the same second (SECURITY-CASES item 87), then
// namespace/name for objects without either (the --dev object store sets neither). A later
// resource can therefore never take over the client_id of an existing one.
func clientIDWinner(cs []claimant) claimant {
	return slices.MinFunc(cs, func(a, b claimant) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(string(a.UID), string(b.UID)),
			strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
}

// tokenAudiences is the aud of a client's access tokens: spec.audiences, or the client_id when
// there are none, as the token server decides (accesstoken.DefaultAudience).
func tokenAudiences(c *latchkeyv1.OAuthClient) []string {
	if len(c.Spec.Audiences) == 0 {
		return []string{c.EffectiveClientID()}
	}
	return slices.Clone(c.Spec.Audiences)
}

// audienceClaimant is an OAuthClient with the audiences of its access tokens.
type audienceClaimant struct {
	claimant
	Audiences []string
}

// audienceShare is an audience a client names that belongs to another namespace.
type audienceShare struct {
	Audience, Namespace string
}

// sharedAudiences decides SECURITY-CASES item 92 for self, given the other OAuthClients that
// name any of its audiences. An audience belongs to the namespace of its oldest claimant, in the
// order of clientIDWinner, so a later client never takes an audience over; the result lists,
// sorted, each audience of self that belongs to another namespace. Clients of one namespace
// share audiences freely: a namespace is one tenant.
func sharedAudiences(self audienceClaimant, others []audienceClaimant) []audienceShare {
	auds := slices.Clone(self.Audiences)
	slices.Sort(auds)
	var out []audienceShare
	for _, aud := range slices.Compact(auds) {
		cs := []claimant{self.claimant}
		for _, o := range others {
			if slices.Contains(o.Audiences, aud) {
				cs = append(cs, o.claimant)
			}
		}
		if w := clientIDWinner(cs); w.Namespace != self.Namespace {
			out = append(out, audienceShare{Audience: aud, Namespace: w.Namespace})
		}
	}
	return out
}

// audienceSharedMessage is the AudienceShared message for shares (not empty). It names each
// audience and the namespace it belongs to, never the other client or anything of it.
func audienceSharedMessage(shares []audienceShare) string {
	parts := make([]string, len(shares))
	for i, sh := range shares {
		parts[i] = fmt.Sprintf("audience %q was named first by an OAuthClient in namespace %s", sh.Audience, sh.Namespace)
	}
	return strings.Join(parts, "; ") + ". This client still gets access tokens for it and, if confidential, may introspect tokens issued for it; " +
		"if that is not intended, remove it from spec.audiences"
}

var (
	clientIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:~-]*$`)
	schemePattern    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	privateUseScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+-]*[.][A-Za-z0-9+.-]+:`)
)

// validateOAuthClient repeats the CRD's CEL rules for objects that never went through an API
// server (the --dev manifests): a client OAuth 2.1 forbids is reported InvalidSpec and never
// served.
func validateOAuthClient(c *latchkeyv1.OAuthClient) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := &c.Spec
	if s.ClientID != "" && (len(s.ClientID) > 128 || !clientIDPattern.MatchString(s.ClientID)) {
		add("clientID %q is not 1-128 characters of [A-Za-z0-9._:~-]", s.ClientID)
	}
	method := c.EffectiveAuthMethod()
	switch s.Type {
	case latchkeyv1.ClientTypePublic:
		if method != latchkeyv1.AuthMethodNone {
			add("a public client cannot authenticate: tokenEndpointAuthMethod must be none")
		}
		if c.AllowsGrant(latchkeyv1.GrantClientCredentials) {
			add("client_credentials needs a confidential client (OAuth 2.1 §4.2)")
		}
	case latchkeyv1.ClientTypeConfidential:
		if method == latchkeyv1.AuthMethodNone {
			add("a confidential client must authenticate: tokenEndpointAuthMethod cannot be none")
		}
	default:
		add("type %q is not public or confidential", s.Type)
	}
	switch method {
	case latchkeyv1.AuthMethodNone, latchkeyv1.AuthMethodClientSecretBasic, latchkeyv1.AuthMethodClientSecretPost, latchkeyv1.AuthMethodPrivateKeyJWT:
	default:
		add("tokenEndpointAuthMethod %q is not supported", method)
	}
	for _, g := range c.EffectiveGrantTypes() {
		switch g {
		case latchkeyv1.GrantAuthorizationCode, latchkeyv1.GrantRefreshToken, latchkeyv1.GrantClientCredentials:
		default:
			// The implicit and password grants are not part of OAuth 2.1 (§10.1, §10.2).
			add("grant type %q is not allowed by OAuth 2.1", g)
		}
	}
	if c.AllowsGrant(latchkeyv1.GrantAuthorizationCode) && len(s.RedirectURIs) == 0 {
		add("authorization_code needs at least one redirect URI")
	}
	if c.AllowsGrant(latchkeyv1.GrantRefreshToken) && !c.AllowsGrant(latchkeyv1.GrantAuthorizationCode) {
		add("refresh_token is only issued with authorization_code")
	}
	for _, u := range s.RedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			add("redirect URI %q: %v", u, err)
		}
	}
	if method == latchkeyv1.AuthMethodPrivateKeyJWT && s.JWKSURI == "" {
		add("private_key_jwt needs jwksURI")
	}
	if s.JWKSURI != "" {
		if method != latchkeyv1.AuthMethodPrivateKeyJWT {
			add("jwksURI is only used with private_key_jwt")
		}
		if u, err := url.Parse(s.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" || strings.Contains(s.JWKSURI, "#") {
			add("jwksURI must be an https URL without a fragment")
		}
	}
	between := func(name string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			add("%s must be between %v and %v", name, lo, hi)
		}
	}
	between("accessTokenLifetime", c.AccessTokenLifetime(), time.Minute, time.Hour)
	between("absoluteLifetime", c.AbsoluteRefreshLifetime(), time.Minute, 2160*time.Hour)
	between("idleLifetime", c.IdleRefreshLifetime(), time.Minute, 2160*time.Hour)
	between("reuseInterval", c.RefreshReuseInterval(), 0, 5*time.Minute)
	if c.IdleRefreshLifetime() > c.AbsoluteRefreshLifetime() {
		add("idleLifetime must not exceed absoluteLifetime")
	}
	switch c.EffectiveSecretSource() {
	case latchkeyv1.SecretSourceGenerated, latchkeyv1.SecretSourceExternal:
	default:
		add("secretSource %q is not Generated or External", s.SecretSource)
	}
	return errors.Join(errs...)
}

// validateRedirectURI applies OAuth 2.1 §2.3.1 and RFC 8252 §7: absolute, no fragment, no
// wildcard, http only for a loopback IP literal, and a private-use scheme only in reverse-domain
// form.
func validateRedirectURI(raw string) error {
	switch {
	case strings.Contains(raw, "#"):
		return errors.New("must not contain a fragment")
	case strings.Contains(raw, "*"):
		return errors.New("must not contain a wildcard")
	case strings.ContainsAny(raw, " \t\r\n") || !schemePattern.MatchString(raw):
		return errors.New("must be absolute and contain no spaces")
	}
	// Like the CRD's rules, only http and https URIs must parse as URLs: a private-use URI is
	// matched as an exact string and only its scheme is constrained.
	lower := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(lower, "http:"):
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("must be a URL: %w", err)
		}
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) && !ip.Equal(net.IPv6loopback) {
			return errors.New("http is only allowed for a loopback redirect (127.0.0.1 or [::1])")
		}
	case strings.HasPrefix(lower, "https:"):
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("must be a URL: %w", err)
		}
		if u.Hostname() == "" {
			return errors.New("an https redirect URI needs a host")
		}
	default:
		if !privateUseScheme.MatchString(raw) {
			return errors.New("a private-use URI scheme must be a reverse domain name such as com.example.app (RFC 8252 §7.1)")
		}
	}
	return nil
}

// clientSecretInput is what planClientSecret needs to decide a Generated Secret's content.
type clientSecretInput struct {
	// Existing is the current Secret (controlled by the client), nil when absent.
	Existing          *corev1.Secret
	ClientID          string
	Issuer            string
	RotateRequest     string // the rotate-secret annotation value
	LastRotateRequest string // status.lastSecretRotateRequest
	Grace             time.Duration
	// HadSecret: the client's Secret was present and valid before (SecretReady was True), so an
	// absent Secret was deleted by someone.
	HadSecret bool
	Now       time.Time
}

// secretOutcome says what planClientSecret changed and why.
type secretOutcome struct {
	// Write: the Secret must be created (Existing nil) or updated.
	Write bool
	// Generated: a new client secret was minted because there was none (first, recreated after
	// a deletion, or an empty client-secret).
	Generated bool
	// Recreated: the Secret was absent although the client had one.
	Recreated bool
	// Rotated: the rotate-secret annotation moved the current secret to previous-client-secret.
	Rotated bool
	// PreviousDropped: the previous secret's grace period ended and it was removed.
	PreviousDropped bool
	// Fixed lists the data keys corrected (client-id, issuer, token-endpoint).
	Fixed []string
	// PreviousExpiresAt is when the previous secret stops being accepted (zero: none).
	PreviousExpiresAt time.Time
	// RotateHandled is the rotate-secret value the Secret now records as handled.
	RotateHandled string
}

// planClientSecret computes the data and annotations of a Generated credentials Secret. fresh is
// a newly generated secret, used only when one is needed. A rotation is driven by a new value of
// the rotate-secret annotation; a value already recorded on the Secret or in status never
// rotates again. Only one previous secret is kept: rotating again within the grace period ends
// the older one's grace at once.
func planClientSecret(in clientSecretInput, fresh string) (map[string][]byte, map[string]string, secretOutcome) {
	var out secretOutcome
	endpoint := strings.TrimRight(in.Issuer, "/") + "/token"
	if in.Existing == nil {
		data := map[string][]byte{
			latchkeyv1.ClientSecretDataClientID:      []byte(in.ClientID),
			latchkeyv1.ClientSecretDataClientSecret:  []byte(fresh),
			latchkeyv1.ClientSecretDataIssuer:        []byte(in.Issuer),
			latchkeyv1.ClientSecretDataTokenEndpoint: []byte(endpoint),
		}
		ann := map[string]string{}
		if in.RotateRequest != "" {
			// A client created with the annotation already set has nothing to rotate.
			ann[latchkeyv1.AnnotationSecretRotateRequest] = in.RotateRequest
			out.RotateHandled = in.RotateRequest
		}
		out.Write, out.Generated, out.Recreated = true, true, in.HadSecret
		return data, ann, out
	}

	data := copyMap(in.Existing.Data)
	ann := copyMap(in.Existing.Annotations)
	out.RotateHandled = ann[latchkeyv1.AnnotationSecretRotateRequest]
	rotate := in.RotateRequest != "" && in.RotateRequest != ann[latchkeyv1.AnnotationSecretRotateRequest] &&
		in.RotateRequest != in.LastRotateRequest
	switch {
	case len(data[latchkeyv1.ClientSecretDataClientSecret]) == 0:
		// Nothing to keep: an empty secret authenticates nobody.
		data[latchkeyv1.ClientSecretDataClientSecret] = []byte(fresh)
		out.Generated = true
	case rotate:
		data[latchkeyv1.ClientSecretDataPreviousSecret] = data[latchkeyv1.ClientSecretDataClientSecret]
		data[latchkeyv1.ClientSecretDataPreviousExpiresAt] = []byte(in.Now.Add(in.Grace).UTC().Format(time.RFC3339))
		data[latchkeyv1.ClientSecretDataClientSecret] = []byte(fresh)
		out.Rotated = true
	}
	if rotate {
		ann[latchkeyv1.AnnotationSecretRotateRequest] = in.RotateRequest
		out.RotateHandled = in.RotateRequest
	}

	if _, ok := data[latchkeyv1.ClientSecretDataPreviousSecret]; ok {
		exp, err := time.Parse(time.RFC3339, string(data[latchkeyv1.ClientSecretDataPreviousExpiresAt]))
		if err != nil || !in.Now.Before(exp) {
			// Expired, or an expiry nobody can read: fail closed.
			delete(data, latchkeyv1.ClientSecretDataPreviousSecret)
			delete(data, latchkeyv1.ClientSecretDataPreviousExpiresAt)
			out.PreviousDropped = true
		} else {
			out.PreviousExpiresAt = exp
		}
	} else if _, ok := data[latchkeyv1.ClientSecretDataPreviousExpiresAt]; ok {
		delete(data, latchkeyv1.ClientSecretDataPreviousExpiresAt)
		out.Fixed = append(out.Fixed, latchkeyv1.ClientSecretDataPreviousExpiresAt)
	}

	for _, f := range []struct{ key, want string }{
		{latchkeyv1.ClientSecretDataClientID, in.ClientID},
		{latchkeyv1.ClientSecretDataIssuer, in.Issuer},
		{latchkeyv1.ClientSecretDataTokenEndpoint, endpoint},
	} {
		if string(data[f.key]) != f.want {
			data[f.key] = []byte(f.want)
			out.Fixed = append(out.Fixed, f.key)
		}
	}
	out.Write = out.Generated || out.Rotated || out.PreviousDropped || len(out.Fixed) > 0 || rotate
	return data, ann, out
}

// checkExternalSecret reports whether an External credentials Secret is usable by the client
// with the given client_id, and if not, the SecretReady reason and why.
func checkExternalSecret(s *corev1.Secret, clientID string) (ok bool, reason, msg string) {
	if v := s.Labels[latchkeyv1.LabelSecretType]; v != latchkeyv1.SecretTypeClientCredentials {
		// The token server caches only Secrets with this label, so without it the Secret is
		// invisible to it however correct its content.
		return false, latchkeyv1.ReasonSecretNotLabelled, fmt.Sprintf("Secret %s exists but lacks the label %s=%s, so the token server cannot see it",
			s.Name, latchkeyv1.LabelSecretType, latchkeyv1.SecretTypeClientCredentials)
	}
	if len(s.Data[latchkeyv1.ClientSecretDataClientSecret]) == 0 {
		return false, latchkeyv1.ReasonSecretInvalid, fmt.Sprintf("Secret %s has no %s", s.Name, latchkeyv1.ClientSecretDataClientSecret)
	}
	if id, ok := s.Data[latchkeyv1.ClientSecretDataClientID]; ok && string(id) != clientID {
		return false, latchkeyv1.ReasonSecretInvalid, fmt.Sprintf("Secret %s is for client_id %q, not %q", s.Name, id, clientID)
	}
	return true, latchkeyv1.ReasonSecretFound, fmt.Sprintf("Secret %s holds the client's credentials", s.Name)
}
