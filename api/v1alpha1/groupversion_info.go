// Package v1alpha1 holds the Latchkey API: the OAuthClient and SigningKey custom resources of the
// auth.latchkey.dev group, and the contract (labels, data keys, conditions) that the controllers
// and the token server share.
//
// +kubebuilder:object:generate=true
// +groupName=auth.latchkey.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Latchkey resource.
	GroupVersion = schema.GroupVersion{Group: "auth.latchkey.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Latchkey types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Latchkey types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
