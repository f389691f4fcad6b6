package revision_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"

	"github.com/latchkey-dev/latchkey/internal/revision"
)

// TestInformedCountsEvents: every add, update and delete an informer delivers moves the
// revision, so the token server's memo is dropped. The cluster behaviour end to end (an edit
// reaches the server within seconds) is covered by test/e2e (TestClientEditsPropagate,
// TestWholeSystem's secret rotation).
func TestInformedCountsEvents(t *testing.T) {
	fake := &informertest.FakeInformers{Scheme: scheme.Scheme}
	in, err := revision.NewInformed(context.Background(), fake, &corev1.Secret{}, &corev1.ConfigMap{})
	if err != nil {
		t.Fatal(err)
	}
	src, ok := revision.Of(in)
	if !ok {
		t.Fatal("Informed is not a Source")
	}
	secrets, err := fake.FakeInformerFor(context.Background(), &corev1.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	cms, err := fake.FakeInformerFor(context.Background(), &corev1.ConfigMap{})
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n"}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "n"}}
	steps := []func(){
		func() { secrets.Add(s) },
		func() { secrets.Update(s, s) },
		func() { cms.Add(cm) },
		func() { secrets.Delete(s) },
		func() { cms.Delete(cm) },
	}
	for i, step := range steps {
		before := src.Revision()
		step()
		if after := src.Revision(); after <= before {
			t.Fatalf("step %d: revision %d -> %d, want an increase", i, before, after)
		}
	}
}
