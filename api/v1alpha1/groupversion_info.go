// Package v1alpha1 holds the Latchkey API: the OAuthClient and SigningKey custom resources of the
// auth.latchkey.dev group, and the contract (labels, data keys, conditions) that the controllers
// and the token server share.
//
// +kubebuilder:object:generate=true
// +groupName=auth.latchkey.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every Latchkey resource.
	GroupVersion = schema.GroupVersion{Group: "auth.latchkey.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Latchkey types with a runtime.Scheme. It is the apimachinery
	// builder rather than controller-runtime's scheme.Builder, which is deprecated because an api
	// package should depend on little more than apimachinery.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Latchkey types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers every Latchkey kind under GroupVersion, with the meta/v1 options
// types (ListOptions and friends) that clients need for the group.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&OAuthClient{}, &OAuthClientList{},
		&SigningKey{}, &SigningKeyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
