package v1alpha1

// This file is the contract between the controllers, which write Secrets, ConfigMaps and status,
// and the token server, which reads them from its cache. Neither side imports the other; both
// import these names.

// Labels put on every object the controllers write, and on objects the token server must see.
const (
	// LabelSecretType marks every Secret the token server caches. The manager's Secret cache is
	// narrowed to Secrets that carry this label, so unrelated Secrets never enter its memory.
	// External client Secrets must carry it too (value SecretTypeClientCredentials).
	LabelSecretType = "auth.latchkey.dev/secret-type"

	// LabelSigningKey names the SigningKey that owns a key Secret or JWKS ConfigMap.
	LabelSigningKey = "auth.latchkey.dev/signing-key"

	// LabelOAuthClient names the OAuthClient whose credentials a Secret holds.
	LabelOAuthClient = "auth.latchkey.dev/oauth-client"

	// LabelManagedBy is the standard managed-by label, set to ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// LabelJWKS marks a JWKS ConfigMap. The ConfigMap cache is narrowed to it.
	LabelJWKS = "auth.latchkey.dev/jwks"
)

// Values of LabelSecretType and LabelManagedBy.
const (
	SecretTypeSigningKey        = "signing-key"
	SecretTypeClientCredentials = "client-credentials"
	SecretTypeUsers             = "users"
	ManagedByValue              = "latchkey"
)

// Annotations users set to ask for something.
const (
	// AnnotationRotate on a SigningKey, set to a new value, asks for a rotation now (still with
	// pre-publication). The same value never rotates twice.
	AnnotationRotate = "auth.latchkey.dev/rotate"

	// AnnotationRotateSecret on an OAuthClient with a Generated secret, set to a new value, asks
	// for a new client secret. The previous one stays valid for the grace period.
	AnnotationRotateSecret = "auth.latchkey.dev/rotate-secret"
)

// Annotations the SigningKey controller writes on each key Secret: the key's timeline. The Secret
// is the record of a key; status.keys is derived from these and can be rebuilt from them.
const (
	AnnotationKeyCreatedAt   = "auth.latchkey.dev/created-at"
	AnnotationKeyActivatesAt = "auth.latchkey.dev/activates-at"
	AnnotationKeyRetiresAt   = "auth.latchkey.dev/retires-at"
	// AnnotationRotateRequest records the rotate annotation value that created the key.
	AnnotationRotateRequest = "auth.latchkey.dev/rotate-request"
)

// AnnotationSecretRotateRequest on a Generated client Secret records the rotate-secret value that
// produced its current secret, so a retried reconcile never rotates twice.
const AnnotationSecretRotateRequest = "auth.latchkey.dev/rotate-secret-handled"

// Data keys of a signing-key Secret.
const (
	// KeyDataPrivateKey is the PKCS#8 PEM private key.
	KeyDataPrivateKey = "private-key.pem"
	// KeyDataKeyID is the kid, the RFC 7638 thumbprint of the public key.
	KeyDataKeyID = "kid"
	// KeyDataAlgorithm is the JWS alg the key signs with.
	KeyDataAlgorithm = "alg"
)

// JWKSDataKey is the key of the JWKS document in a SigningKey's ConfigMap, named
// "<signingkey>-jwks".
const JWKSDataKey = "jwks.json"

// JWKSConfigMapSuffix is appended to a SigningKey's name to name its JWKS ConfigMap.
const JWKSConfigMapSuffix = "-jwks"

// Data keys of a client credentials Secret.
const (
	ClientSecretDataClientID      = "client-id"
	ClientSecretDataClientSecret  = "client-secret"
	ClientSecretDataIssuer        = "issuer"
	ClientSecretDataTokenEndpoint = "token-endpoint"
	// ClientSecretDataPreviousSecret is the secret replaced by the last rotation, accepted until
	// ClientSecretDataPreviousExpiresAt (RFC 3339).
	ClientSecretDataPreviousSecret    = "previous-client-secret"
	ClientSecretDataPreviousExpiresAt = "previous-client-secret-expires-at"
)

// DefaultClientSecretSuffix is appended to an OAuthClient's name for its default Secret name.
const DefaultClientSecretSuffix = "-oauth-client"

// UsersDataKey is the key of the users file in the users Secret.
const UsersDataKey = "users.yaml"

// ClientIDIndex is the field index on OAuthClients by effective client ID. The manager's cache and
// the --dev object store both register it with OAuthClient.EffectiveClientID.
const ClientIDIndex = "latchkey.effectiveClientID"

// AudienceIndex is the field index on OAuthClients by each audience their access tokens carry:
// spec.audiences, or the effective client ID when there are none (the aud such a client's tokens
// get). The controller uses it to find the clients of other namespaces that name an audience.
const AudienceIndex = "latchkey.audience"

// Condition types.
const (
	// ConditionReady on an OAuthClient: the token server serves it. On a SigningKey: a valid key
	// signs and the JWKS is published.
	ConditionReady = "Ready"
	// ConditionSecretReady on an OAuthClient: its credentials Secret is present and valid.
	ConditionSecretReady = "SecretReady"
	// ConditionAudienceShared on an OAuthClient: it names an audience that an older OAuthClient
	// in another namespace named first (SECURITY-CASES item 92). It is a flag, not a rejection:
	// Ready is unaffected. The condition is absent when no audience is shared.
	ConditionAudienceShared = "AudienceShared"
)

// Condition reasons.
const (
	ReasonAccepted         = "Accepted"
	ReasonInvalidSpec      = "InvalidSpec"
	ReasonClientIDConflict = "ClientIDConflict"
	ReasonSecretMissing    = "SecretMissing"
	ReasonSecretInvalid    = "SecretInvalid"
	ReasonSecretGenerated  = "SecretGenerated"
	ReasonSecretRotated    = "SecretRotated"
	ReasonSecretFound      = "SecretFound"
	ReasonNotRequired      = "NotRequired"
	// ReasonSecretNotLabelled: an External Secret exists but lacks LabelSecretType=client-credentials,
	// so the token server (whose cache holds only labelled Secrets) cannot see it.
	ReasonSecretNotLabelled = "SecretNotLabelled"
	// ReasonSecretNotOwned: the Secret a Generated client names exists and is not controlled by
	// the client; the controller never overwrites it.
	ReasonSecretNotOwned = "SecretNotOwned"
	// ReasonAudienceClaimedInNamespace: an audience the client names was named first by an
	// OAuthClient of another namespace (ConditionAudienceShared=True).
	ReasonAudienceClaimedInNamespace = "AudienceClaimedInNamespace"

	ReasonKeysReady        = "KeysReady"
	ReasonKeySecretMissing = "KeySecretMissing"
	ReasonKeySecretInvalid = "KeySecretInvalid"
	ReasonNoActiveKey      = "NoActiveKey"
	ReasonRotating         = "Rotating"
	ReasonKeyRevoked       = "KeyRevoked"
	ReasonReconcileError   = "ReconcileError"
)
