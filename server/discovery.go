package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
)

// Paths of the endpoints, under the issuer's path. Discovery is authoritative for them.
const (
	pathAuthorize   = "/authorize"
	pathToken       = "/token"
	pathIntrospect  = "/introspect"
	pathRevoke      = "/revoke"
	pathJWKS        = "/jwks"
	pathHealthz     = "/healthz"
	pathReadyz      = "/readyz"
	pathOAuthConfig = "/.well-known/oauth-authorization-server"
	pathOIDCConfig  = "/.well-known/openid-configuration"
)

// Metadata is the authorization server metadata (RFC 8414 §2), served identically at
// /.well-known/oauth-authorization-server and /.well-known/openid-configuration. It is built
// once in New from the same values the endpoints enforce, so it advertises exactly what is
// enforced (SECURITY-CASES 74).
type Metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	// UserinfoEndpoint is OpenID Connect; set by the code flow when it serves one.
	UserinfoEndpoint string `json:"userinfo_endpoint,omitempty"`

	ScopesSupported               []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported        []string `json:"response_types_supported"`
	ResponseModesSupported        []string `json:"response_modes_supported"`
	GrantTypesSupported           []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`

	TokenEndpointAuthMethodsSupported                  []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethodsSupported          []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported             []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`

	// AuthorizationResponseIssParameterSupported: every authorization response carries iss
	// (RFC 9207).
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`

	// OpenID Connect Discovery 1.0 members, filled by the code flow through registerMetadata.
	SubjectTypesSupported            []string `json:"subject_types_supported,omitempty"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported,omitempty"`
	ClaimsSupported                  []string `json:"claims_supported,omitempty"`
	// PromptValuesSupported lists the prompt values /authorize honours (OpenID Connect
	// Prompt Create 1.0 §4.1 registered this member).
	PromptValuesSupported []string `json:"prompt_values_supported,omitempty"`
}

// metadataHooks let later features add their members (OpenID Connect) from their own files,
// without editing buildMetadata: func init() { registerMetadata(func(s *Server, m *Metadata) {...}) }.
var metadataHooks []func(*Server, *Metadata)

// registerMetadata adds a hook run by New after the base document is built. Call it from an
// init function.
func registerMetadata(hook func(*Server, *Metadata)) {
	metadataHooks = append(metadataHooks, hook)
}

// Client authentication methods by endpoint: what clients.Authenticator accepts, with the
// clients.Policy each endpoint passes.
var (
	secretAndJWTMethods = []string{
		string(latchkeyv1.AuthMethodClientSecretBasic),
		string(latchkeyv1.AuthMethodClientSecretPost),
		string(latchkeyv1.AuthMethodPrivateKeyJWT),
	}
	allAuthMethods = append(append([]string{}, secretAndJWTMethods...), string(latchkeyv1.AuthMethodNone))
)

func (s *Server) buildMetadata() error {
	algs := make([]string, 0, len(jwsalg.Client))
	for _, a := range jwsalg.Client {
		algs = append(algs, string(a))
	}
	m := Metadata{
		Issuer:                                     s.issuer,
		AuthorizationEndpoint:                      s.url(pathAuthorize),
		TokenEndpoint:                              s.url(pathToken),
		JWKSURI:                                    s.url(pathJWKS),
		IntrospectionEndpoint:                      s.url(pathIntrospect),
		RevocationEndpoint:                         s.url(pathRevoke),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        s.grantTypes(),
		CodeChallengeMethodsSupported:              []string{"S256"},
		TokenEndpointAuthMethodsSupported:          allAuthMethods,
		TokenEndpointAuthSigningAlgValuesSupported: algs,
		IntrospectionEndpointAuthMethodsSupported:  secretAndJWTMethods,
		IntrospectionEndpointAuthSigningAlgValuesSupported: algs,
		RevocationEndpointAuthMethodsSupported:             allAuthMethods,
		RevocationEndpointAuthSigningAlgValuesSupported:    algs,
		AuthorizationResponseIssParameterSupported:         true,
	}
	for _, hook := range metadataHooks {
		hook(s, &m)
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("build discovery document: %w", err)
	}
	s.metadata = m
	s.metadataDoc = append(doc, '\n')
	return nil
}

// handleDiscovery serves the metadata document built in New. Host and X-Forwarded-* headers
// play no part in it (RFC 8414 §3.3, SECURITY-CASES 73).
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	s.corsForRegisteredOrigin(w, r)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.metadataDoc)
}
