package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of a SigningKey, repeated here for objects that never went through an API server.
const (
	DefaultRotationInterval = 720 * time.Hour
	DefaultPrePublish       = time.Hour
	DefaultRetention        = 24 * time.Hour
)

// EffectiveAlgorithm is spec.algorithm, ES256 when unset.
func (k *SigningKey) EffectiveAlgorithm() SigningAlgorithm {
	if k.Spec.Algorithm == "" {
		return AlgorithmES256
	}
	return k.Spec.Algorithm
}

// RotationInterval is spec.rotationInterval, 720h when unset.
func (k *SigningKey) RotationInterval() time.Duration {
	return durationOr(k.Spec.RotationInterval, DefaultRotationInterval)
}

// PrePublish is spec.prePublish, 1h when unset.
func (k *SigningKey) PrePublish() time.Duration {
	return durationOr(k.Spec.PrePublish, DefaultPrePublish)
}

// Retention is spec.retention, 24h when unset.
func (k *SigningKey) Retention() time.Duration {
	return durationOr(k.Spec.Retention, DefaultRetention)
}

// JWKSConfigMapName is the name of the ConfigMap that publishes the SigningKey's public keys.
func (k *SigningKey) JWKSConfigMapName() string {
	return k.Name + JWKSConfigMapSuffix
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
