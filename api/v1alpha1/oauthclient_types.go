package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClientType says whether a client can keep a credential (OAuth 2.1 §2.1).
// +kubebuilder:validation:Enum=public;confidential
type ClientType string

// The client types of OAuth 2.1 §2.1.
const (
	ClientTypePublic       ClientType = "public"
	ClientTypeConfidential ClientType = "confidential"
)

// TokenEndpointAuthMethod is how a client authenticates at the token endpoint (RFC 7591 §2).
// +kubebuilder:validation:Enum=none;client_secret_basic;client_secret_post;private_key_jwt
type TokenEndpointAuthMethod string

// The client authentication methods Latchkey accepts.
const (
	AuthMethodNone              TokenEndpointAuthMethod = "none"
	AuthMethodClientSecretBasic TokenEndpointAuthMethod = "client_secret_basic"
	AuthMethodClientSecretPost  TokenEndpointAuthMethod = "client_secret_post"
	AuthMethodPrivateKeyJWT     TokenEndpointAuthMethod = "private_key_jwt"
)

// GrantType is an OAuth 2.1 grant. The implicit and password grants are not in OAuth 2.1 and
// cannot be expressed.
// +kubebuilder:validation:Enum=authorization_code;refresh_token;client_credentials
type GrantType string

// The grants Latchkey implements.
const (
	GrantAuthorizationCode GrantType = "authorization_code"
	GrantRefreshToken      GrantType = "refresh_token"
	GrantClientCredentials GrantType = "client_credentials"
)

// SecretSource says who writes a confidential client's Secret.
// +kubebuilder:validation:Enum=Generated;External
type SecretSource string

// The sources of client credentials.
const (
	// SecretSourceGenerated: the controller generates the secret, owns the Secret, and rotates
	// it on request.
	SecretSourceGenerated SecretSource = "Generated"
	// SecretSourceExternal: someone else (External Secrets, Vault, a GitOps tool) writes the
	// Secret; the controller only reads it and never invents credentials.
	SecretSourceExternal SecretSource = "External"
)

// RefreshTokenPolicy bounds the life of refresh-token families.
// +kubebuilder:validation:XValidation:rule="!has(self.idleLifetime) || !has(self.absoluteLifetime) || duration(self.idleLifetime) <= duration(self.absoluteLifetime)",message="idleLifetime must not exceed absoluteLifetime"
type RefreshTokenPolicy struct {
	// absoluteLifetime ends the whole family this long after the grant, however often it is used.
	// +optional
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('2160h')",message="absoluteLifetime must be between 1m and 2160h (90 days)"
	AbsoluteLifetime *metav1.Duration `json:"absoluteLifetime,omitempty"`

	// idleLifetime expires a refresh token that is not used for this long.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('2160h')",message="idleLifetime must be between 1m and 2160h (90 days)"
	IdleLifetime *metav1.Duration `json:"idleLifetime,omitempty"`

	// reuseInterval is the grace during which the refresh token that was just rotated may be
	// presented again (a benign retry after a lost response). Within it, the retry gets a new
	// successor and the successor issued before is revoked, so a family always has exactly one
	// live refresh token. Outside it, any reuse revokes the whole family. FAPI 2.0 clients need
	// a non-zero value. Default 0.
	// +optional
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('5m')",message="reuseInterval must be between 0s and 5m"
	ReuseInterval *metav1.Duration `json:"reuseInterval,omitempty"`
}

// RateLimit bounds how often one client may call the token, introspection and revocation
// endpoints. Each endpoint counts the client's requests on its own, in fixed windows shared by
// every replica (counted in Redis), so a busy resource server introspecting tokens does not use
// up its token requests. Past the limit a request is answered 429 with Retry-After. Fixed
// windows let a client make up to twice the limit across a window boundary; the limit is a
// guard against a runaway or abusive client, not a billing quota.
type RateLimit struct {
	// requests is how many requests the client may make to each endpoint per window. 0 turns
	// the limit off. Default 6000.
	// +optional
	// +kubebuilder:default=6000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Requests *int32 `json:"requests,omitempty"`

	// window is the length of the fixed window the requests are counted in. Default 1m,
	// between 1s and 1h.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="window must be between 1s and 1h"
	Window *metav1.Duration `json:"window,omitempty"`
}

// OAuthClientSpec is the registration of one OAuth 2.1 client.
//
// +kubebuilder:validation:XValidation:rule="self.type != 'public' || self.tokenEndpointAuthMethod == 'none'",message="a public client cannot authenticate: tokenEndpointAuthMethod must be none",reason=FieldValueInvalid,fieldPath=".tokenEndpointAuthMethod"
// +kubebuilder:validation:XValidation:rule="self.type != 'confidential' || self.tokenEndpointAuthMethod != 'none'",message="a confidential client must authenticate: tokenEndpointAuthMethod cannot be none",reason=FieldValueInvalid,fieldPath=".tokenEndpointAuthMethod"
// +kubebuilder:validation:XValidation:rule="self.type != 'public' || !('client_credentials' in self.grantTypes)",message="client_credentials needs a confidential client (OAuth 2.1 §4.2)",reason=FieldValueInvalid,fieldPath=".grantTypes"
// +kubebuilder:validation:XValidation:rule="!('authorization_code' in self.grantTypes) || (has(self.redirectURIs) && size(self.redirectURIs) > 0)",message="authorization_code needs at least one redirect URI",reason=FieldValueRequired,fieldPath=".redirectURIs"
// +kubebuilder:validation:XValidation:rule="!('refresh_token' in self.grantTypes) || 'authorization_code' in self.grantTypes",message="refresh_token is only issued with authorization_code",reason=FieldValueInvalid,fieldPath=".grantTypes"
// +kubebuilder:validation:XValidation:rule="self.tokenEndpointAuthMethod != 'private_key_jwt' || (has(self.jwksURI) && size(self.jwksURI) > 0)",message="private_key_jwt needs jwksURI",reason=FieldValueRequired,fieldPath=".jwksURI"
// +kubebuilder:validation:XValidation:rule="!has(self.jwksURI) || size(self.jwksURI) == 0 || self.tokenEndpointAuthMethod == 'private_key_jwt'",message="jwksURI is only used with private_key_jwt",reason=FieldValueInvalid,fieldPath=".jwksURI"
type OAuthClientSpec struct {
	// clientID is the client_id. Default "<name>.<namespace>". When two OAuthClients claim the
	// same clientID, the oldest one wins (UID breaks a tie) and the other reports ClientIDConflict.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:~-]*$`
	ClientID string `json:"clientID,omitempty"`

	// type is public (a browser or native app that cannot keep a secret) or confidential.
	// +required
	Type ClientType `json:"type"`

	// tokenEndpointAuthMethod is how the client authenticates: none for public clients; one of
	// client_secret_basic, client_secret_post or private_key_jwt for confidential clients.
	// +optional
	// +kubebuilder:default=client_secret_basic
	TokenEndpointAuthMethod TokenEndpointAuthMethod `json:"tokenEndpointAuthMethod,omitempty"`

	// grantTypes are the grants the client may use.
	// +optional
	// +kubebuilder:default={authorization_code,refresh_token}
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	GrantTypes []GrantType `json:"grantTypes,omitempty"`

	// redirectURIs are matched exactly, except that a loopback redirect (http://127.0.0.1 or
	// http://[::1]) matches on any port (RFC 8252 §7.3). Each must be absolute, without a
	// fragment or wildcard; http is only allowed for a loopback host; a private-use scheme must
	// be a reverse domain name (RFC 8252 §7.1).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('#')",message="a redirect URI must not contain a fragment"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('*')",message="a redirect URI must not contain a wildcard"
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[A-Za-z][A-Za-z0-9+.-]*:[^ ]+$')",message="a redirect URI must be absolute and contain no spaces"
	// +kubebuilder:validation:items:XValidation:rule="!self.lowerAscii().startsWith('http:') || (isURL(self) && url(self).getHostname() in ['127.0.0.1', '::1'])",message="http is only allowed for a loopback redirect (127.0.0.1 or [::1])"
	// +kubebuilder:validation:items:XValidation:rule="!self.lowerAscii().startsWith('https:') || (isURL(self) && size(url(self).getHostname()) > 0)",message="an https redirect URI needs a host"
	// +kubebuilder:validation:items:XValidation:rule="self.lowerAscii().startsWith('http:') || self.lowerAscii().startsWith('https:') || self.matches('^[A-Za-z][A-Za-z0-9+-]*[.][A-Za-z0-9+.-]+:')",message="a private-use URI scheme must be a reverse domain name such as com.example.app (RFC 8252 §7.1)"
	RedirectURIs []string `json:"redirectURIs,omitempty"`

	// scopes are the scopes the client may request.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[!#-\[\]-~]+$`
	Scopes []string `json:"scopes,omitempty"`

	// audiences are the aud of the client's access tokens: the resource servers they are for.
	// A resource server that registers as a confidential client with these audiences may
	// introspect tokens issued for them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	Audiences []string `json:"audiences,omitempty"`

	// accessTokenLifetime is how long the client's access tokens live. Default 15m, at most 1h.
	// +optional
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('1h')",message="accessTokenLifetime must be between 1m and 1h"
	AccessTokenLifetime *metav1.Duration `json:"accessTokenLifetime,omitempty"`

	// refreshTokenPolicy bounds the life of the client's refresh tokens.
	// +optional
	RefreshTokenPolicy RefreshTokenPolicy `json:"refreshTokenPolicy,omitempty"`

	// rateLimit bounds the client's requests to the token, introspection and revocation
	// endpoints (default 6000 per minute on each). Failed client authentication is limited
	// separately, per client_id, by the server.
	// +optional
	RateLimit RateLimit `json:"rateLimit,omitempty"`

	// corsOrigins are the browser origins allowed to call the token, revocation, introspection
	// and JWKS endpoints for this client. The authorization endpoint never sends CORS headers.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^https?://[^/?#*\s]+$`
	CORSOrigins []string `json:"corsOrigins,omitempty"`

	// requireConsent shows the user a consent page listing the requested scopes. The decision is
	// remembered per user, client and scope set.
	// +optional
	RequireConsent bool `json:"requireConsent,omitempty"`

	// secretName is the Secret holding a confidential client's credentials (keys client-id,
	// client-secret, issuer, token-endpoint). Default "<name>-oauth-client".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`

	// secretSource is Generated (the controller writes and owns the Secret) or External (someone
	// else writes it; the controller only reads it and reports SecretMissing while it is absent).
	// An External Secret must carry the label auth.latchkey.dev/secret-type=client-credentials,
	// or the token server, which only caches labelled Secrets, cannot see it.
	// +optional
	// +kubebuilder:default=Generated
	SecretSource SecretSource `json:"secretSource,omitempty"`

	// jwksURI is where a private_key_jwt client publishes its public keys (https only).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || (isURL(self) && url(self).getScheme() == 'https' && !self.contains('#'))",message="jwksURI must be an https URL without a fragment"
	JWKSURI string `json:"jwksURI,omitempty"`
}

// OAuthClientStatus is the observed state of an OAuthClient.
type OAuthClientStatus struct {
	// clientID is the effective client_id.
	// +optional
	ClientID string `json:"clientID,omitempty"`

	// secretName is the effective credentials Secret of a confidential client.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// lastSecretRotateRequest is the last value of the auth.latchkey.dev/rotate-secret
	// annotation that was acted on.
	// +optional
	LastSecretRotateRequest string `json:"lastSecretRotateRequest,omitempty"`

	// previousSecretExpiresAt is when the secret replaced by the last rotation stops being
	// accepted.
	// +optional
	PreviousSecretExpiresAt *metav1.Time `json:"previousSecretExpiresAt,omitempty"`

	// conditions: Ready (the token server serves this client), SecretReady (its credentials
	// Secret is present and valid; confidential secret-based clients only) and, only while it
	// holds, AudienceShared (an audience it names was named first by an OAuthClient in another
	// namespace; a flag that leaves Ready alone).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// OAuthClient registers an OAuth 2.1 client with Latchkey. Workloads apply it next to their
// Deployment; the controller validates it, resolves its client_id, and gives confidential clients
// their credentials in a Secret. The token server serves only clients whose Ready condition is
// True.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oac,categories=latchkey
// +kubebuilder:printcolumn:name="Client ID",type=string,JSONPath=`.status.clientID`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OAuthClient struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the client registration.
	// +required
	Spec OAuthClientSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status OAuthClientStatus `json:"status,omitempty"`
}

// OAuthClientList is a list of OAuthClients.
//
// +kubebuilder:object:root=true
type OAuthClientList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OAuthClient `json:"items"`
}
