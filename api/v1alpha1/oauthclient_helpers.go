package v1alpha1

import (
	"slices"
	"time"
)

// Defaults the API server applies; the helpers below repeat them so that objects that never went
// through an API server (the --dev manifests) behave the same.
const (
	DefaultAccessTokenLifetime = 15 * time.Minute
	DefaultAbsoluteLifetime    = 168 * time.Hour
	DefaultIdleLifetime        = 24 * time.Hour
	// DefaultRateLimitRequests and DefaultRateLimitWindow are spec.rateLimit's defaults.
	DefaultRateLimitRequests = 6000
	DefaultRateLimitWindow   = time.Minute
)

// EffectiveClientID is spec.clientID, or "<name>.<namespace>" when it is empty.
func (c *OAuthClient) EffectiveClientID() string {
	if c.Spec.ClientID != "" {
		return c.Spec.ClientID
	}
	return c.Name + "." + c.Namespace
}

// EffectiveSecretName is spec.secretName, or "<name>-oauth-client" when it is empty.
func (c *OAuthClient) EffectiveSecretName() string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return c.Name + DefaultClientSecretSuffix
}

// EffectiveSecretSource is spec.secretSource, Generated when empty.
func (c *OAuthClient) EffectiveSecretSource() SecretSource {
	if c.Spec.SecretSource == "" {
		return SecretSourceGenerated
	}
	return c.Spec.SecretSource
}

// EffectiveAuthMethod is spec.tokenEndpointAuthMethod, defaulted as the API server does.
func (c *OAuthClient) EffectiveAuthMethod() TokenEndpointAuthMethod {
	if c.Spec.TokenEndpointAuthMethod == "" {
		if c.Spec.Type == ClientTypePublic {
			return AuthMethodNone
		}
		return AuthMethodClientSecretBasic
	}
	return c.Spec.TokenEndpointAuthMethod
}

// EffectiveGrantTypes is spec.grantTypes, defaulted as the API server does.
func (c *OAuthClient) EffectiveGrantTypes() []GrantType {
	if len(c.Spec.GrantTypes) == 0 {
		return []GrantType{GrantAuthorizationCode, GrantRefreshToken}
	}
	return c.Spec.GrantTypes
}

// AllowsGrant reports whether the client may use grant g.
func (c *OAuthClient) AllowsGrant(g GrantType) bool {
	return slices.Contains(c.EffectiveGrantTypes(), g)
}

// UsesClientSecret reports whether the client authenticates with a shared secret, and so needs a
// credentials Secret.
func (c *OAuthClient) UsesClientSecret() bool {
	m := c.EffectiveAuthMethod()
	return c.Spec.Type == ClientTypeConfidential &&
		(m == AuthMethodClientSecretBasic || m == AuthMethodClientSecretPost)
}

// AccessTokenLifetime is spec.accessTokenLifetime, 15m when unset.
func (c *OAuthClient) AccessTokenLifetime() time.Duration {
	return durationOr(c.Spec.AccessTokenLifetime, DefaultAccessTokenLifetime)
}

// AbsoluteRefreshLifetime is spec.refreshTokenPolicy.absoluteLifetime, 7 days when unset.
func (c *OAuthClient) AbsoluteRefreshLifetime() time.Duration {
	return durationOr(c.Spec.RefreshTokenPolicy.AbsoluteLifetime, DefaultAbsoluteLifetime)
}

// IdleRefreshLifetime is spec.refreshTokenPolicy.idleLifetime, 24h when unset.
func (c *OAuthClient) IdleRefreshLifetime() time.Duration {
	return durationOr(c.Spec.RefreshTokenPolicy.IdleLifetime, DefaultIdleLifetime)
}

// RefreshReuseInterval is spec.refreshTokenPolicy.reuseInterval, 0 when unset.
func (c *OAuthClient) RefreshReuseInterval() time.Duration {
	return durationOr(c.Spec.RefreshTokenPolicy.ReuseInterval, 0)
}

// RateLimitRequests is spec.rateLimit.requests, 6000 when unset; 0 means no limit.
func (c *OAuthClient) RateLimitRequests() int64 {
	if c.Spec.RateLimit.Requests == nil {
		return DefaultRateLimitRequests
	}
	return int64(max(*c.Spec.RateLimit.Requests, 0))
}

// RateLimitWindow is spec.rateLimit.window, 1m when unset.
func (c *OAuthClient) RateLimitWindow() time.Duration {
	return durationOr(c.Spec.RateLimit.Window, DefaultRateLimitWindow)
}
