package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SigningAlgorithm is a JWS algorithm a SigningKey can sign with. The list is an allow-list:
// symmetric algorithms and "none" can never be expressed.
// +kubebuilder:validation:Enum=RS256;PS256;ES256;EdDSA
type SigningAlgorithm string

// The signing algorithms Latchkey supports.
const (
	AlgorithmRS256 SigningAlgorithm = "RS256"
	AlgorithmPS256 SigningAlgorithm = "PS256"
	AlgorithmES256 SigningAlgorithm = "ES256"
	AlgorithmEdDSA SigningAlgorithm = "EdDSA"
)

// KeyState is where a key is in its timeline: Next (published, not signing), Active (signing) or
// Retired (published so tokens it signed still verify, not signing).
// +kubebuilder:validation:Enum=Next;Active;Retired
type KeyState string

// The states of a key's timeline.
const (
	KeyStateNext    KeyState = "Next"
	KeyStateActive  KeyState = "Active"
	KeyStateRetired KeyState = "Retired"
)

// SigningKeySpec is the desired rotation policy of a family of signing keys.
// +kubebuilder:validation:XValidation:rule="!has(self.prePublish) || !has(self.rotationInterval) || duration(self.prePublish) < duration(self.rotationInterval)",message="prePublish must be shorter than rotationInterval"
type SigningKeySpec struct {
	// algorithm is the JWS algorithm of the keys. RS256 and PS256 keys are 3072-bit RSA, ES256
	// keys are P-256 and EdDSA keys are Ed25519.
	// +optional
	// +kubebuilder:default=ES256
	Algorithm SigningAlgorithm `json:"algorithm,omitempty"`

	// rotationInterval is how long each key signs before the next one takes over.
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotationInterval must be at least 1h"
	RotationInterval *metav1.Duration `json:"rotationInterval,omitempty"`

	// prePublish is how long a new key sits in the JWKS before it signs, so that verifiers that
	// cache the JWKS already know it when the first token signed with it arrives.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="prePublish must not be negative"
	PrePublish *metav1.Duration `json:"prePublish,omitempty"`

	// retention is how long a retired key stays in the JWKS. It must be at least the longest
	// access-token lifetime (1h), or tokens signed just before the rotation would stop verifying.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="retention must be at least 1h, the longest access-token lifetime"
	Retention *metav1.Duration `json:"retention,omitempty"`

	// revokedKeyIDs lists key IDs that are compromised: they leave the JWKS at once, their Secret
	// is deleted, and they are never used again. If the Active key is revoked, the Next key (or a
	// freshly generated one) is promoted immediately.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	RevokedKeyIDs []string `json:"revokedKeyIDs,omitempty"`
}

// SigningKeyStatus is the observed state of a SigningKey.
type SigningKeyStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// jwksConfigMapName names the ConfigMap whose jwks.json holds the public keys of every
	// published key.
	// +optional
	JWKSConfigMapName string `json:"jwksConfigMapName,omitempty"`

	// activeKeyID is the kid of the key that signs now.
	// +optional
	ActiveKeyID string `json:"activeKeyID,omitempty"`

	// nextRotationTime is when the Active key is next replaced.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// lastRotateRequest is the last value of the auth.latchkey.dev/rotate annotation that was
	// acted on, so that the same value never rotates twice.
	// +optional
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`

	// keys lists every key that still exists, oldest first.
	// +optional
	// +listType=map
	// +listMapKey=keyID
	Keys []KeyStatus `json:"keys,omitempty"`

	// conditions: Ready is True when a valid key signs and the JWKS is published.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// KeyStatus describes one key of a SigningKey.
type KeyStatus struct {
	// keyID is the key's kid, its RFC 7638 JWK thumbprint.
	// +required
	KeyID string `json:"keyID"`

	// state is Next, Active or Retired.
	// +required
	State KeyState `json:"state"`

	// secretName is the Secret holding the private key.
	// +required
	SecretName string `json:"secretName"`

	// createdAt is when the key was generated.
	// +optional
	CreatedAt *metav1.Time `json:"createdAt,omitempty"`

	// activatesAt is when the key starts (or started) signing.
	// +optional
	ActivatesAt *metav1.Time `json:"activatesAt,omitempty"`

	// retiresAt is when the key stops (or stopped) signing.
	// +optional
	RetiresAt *metav1.Time `json:"retiresAt,omitempty"`

	// expiresAt is when the key leaves the JWKS and its Secret is deleted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// SigningKey is a rotating family of asymmetric keys that sign access tokens. The controller
// generates each key, keeps its private half in a Secret, publishes the public halves as a JWKS
// in a ConfigMap, and moves keys along Next -> Active -> Retired -> gone.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sk,categories=latchkey
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="a SigningKey name must be at most 63 characters: it is the value of the auth.latchkey.dev/signing-key label"
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.algorithm`
// +kubebuilder:printcolumn:name="Active Key",type=string,JSONPath=`.status.activeKeyID`
// +kubebuilder:printcolumn:name="Next Rotation",type=date,JSONPath=`.status.nextRotationTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SigningKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the rotation policy.
	// +optional
	Spec SigningKeySpec `json:"spec,omitempty"`

	// status is the observed state.
	// +optional
	Status SigningKeyStatus `json:"status,omitempty"`
}

// SigningKeyList is a list of SigningKeys.
//
// +kubebuilder:object:root=true
type SigningKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SigningKey `json:"items"`
}
