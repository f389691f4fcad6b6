package revision_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/latchkey-dev/latchkey/internal/revision"
)

func newClient(t *testing.T, objs ...client.Object) *revision.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return revision.NewClient(fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&corev1.Pod{}).Build())
}

// Every kind of write, the status subresource included, moves the revision; reads do not.
func TestClientCountsEveryWrite(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	if _, ok := revision.Of(c); !ok {
		t.Fatal("a Client is a Source")
	}
	rev := c.Revision()
	step := func(name string, write func() error) {
		t.Helper()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if now := c.Revision(); now <= rev {
			t.Fatalf("%s did not move the revision (%d)", name, now)
		} else {
			rev = now
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"}, Data: map[string]string{"k": "v"}}
	step("Create", func() error { return c.Create(ctx, cm) })
	cm.Data["k"] = "w"
	step("Update", func() error { return c.Update(ctx, cm) })
	step("Patch", func() error {
		return c.Patch(ctx, cm, client.RawPatch("application/merge-patch+json", []byte(`{"data":{"k":"x"}}`)))
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	step("Create pod", func() error { return c.Create(ctx, pod) })
	pod.Status.Message = "status"
	step("Status().Update", func() error { return c.Status().Update(ctx, pod) })
	step("Status().Patch", func() error {
		return c.Status().Patch(ctx, pod, client.RawPatch("application/merge-patch+json", []byte(`{"status":{"message":"m"}}`)))
	})
	pod.Status.Message = "sub"
	step("SubResource(status).Update", func() error { return c.SubResource("status").Update(ctx, pod) })
	step("Delete", func() error { return c.Delete(ctx, cm) })
	step("DeleteAllOf", func() error { return c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace("ns")) })

	// A failed write may have changed something: it counts too.
	step("failed Update", func() error {
		if err := c.Update(ctx, cm); err == nil {
			t.Fatal("updating a deleted object succeeded")
		}
		return nil
	})

	var list corev1.ConfigMapList
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	var got corev1.ConfigMap
	_ = c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "a"}, &got)
	if c.Revision() != rev {
		t.Fatal("a read moved the revision")
	}
}

// A plain reader is not a Source: its users read it every time.
func TestOfPlainReader(t *testing.T) {
	s := runtime.NewScheme()
	if _, ok := revision.Of(fake.NewClientBuilder().WithScheme(s).Build()); ok {
		t.Fatal("the fake client is not a Source")
	}
}

func TestMemo(t *testing.T) {
	var m revision.Memo[string, int]
	if _, ok := m.Get(0, "a"); ok {
		t.Fatal("empty memo hit")
	}
	m.Put(3, "a", 1, 2)
	if v, ok := m.Get(3, "a"); !ok || v != 1 {
		t.Fatalf("Get(3, a) = %d, %v", v, ok)
	}
	if _, ok := m.Get(4, "a"); ok {
		t.Fatal("a value of revision 3 served at revision 4")
	}
	// A late Put from reads that began at an older revision is dropped.
	m.Put(4, "b", 2, 2)
	m.Put(3, "c", 3, 2)
	if _, ok := m.Get(4, "c"); ok {
		t.Fatal("an older revision's value was kept")
	}
	if _, ok := m.Get(4, "a"); ok {
		t.Fatal("revision 3's values survived revision 4")
	}
	// The bound: past max values, keys are not remembered.
	m.Put(4, "d", 4, 2)
	m.Put(4, "e", 5, 2)
	if _, ok := m.Get(4, "e"); ok {
		t.Fatal("memo grew past its bound")
	}
	if v, ok := m.Get(4, "d"); !ok || v != 4 {
		t.Fatal("value within the bound lost")
	}
}
