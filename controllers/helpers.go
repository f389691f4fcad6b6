package controllers

import (
	"crypto/sha256"
	"encoding/hex"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// controlledBy reports whether owner (of the given kind in our API group) is the controller of
// obj. UIDs alone are not enough where objects never went through an API server (--dev), so the
// kind and name must match too.
func controlledBy(obj, owner metav1.Object, kind string) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == latchkeyv1.GroupVersion.Group && ref.Kind == kind &&
		ref.Name == owner.GetName() && ref.UID == owner.GetUID()
}

// labelValue fits an object name into a label value (at most 63 characters): longer names keep
// a prefix and gain a hash of the whole name, so distinct names stay distinct.
func labelValue(name string) string {
	if len(name) <= validation.LabelValueMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:10]
	return name[:validation.LabelValueMaxLength-len(h)-1] + "-" + h
}

// copyMap returns a copy of m that is safe to modify (never nil).
func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m)+4)
	for k, v := range m {
		out[k] = v
	}
	return out
}
