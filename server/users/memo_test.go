package users

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
)

// countingReader is a revision.Client that counts its Gets.
type countingReader struct {
	*revision.Client
	gets atomic.Int64
}

func (r *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.gets.Add(1)
	return r.Client.Get(ctx, key, obj, opts...)
}

// With a Reader that implements revision.Source, the Secret is read once per revision, and a
// write through the Reader is seen by the next lookup.
func TestDirectoryReadsOncePerRevision(t *testing.T) {
	r := &countingReader{Client: revision.NewClient(fake.NewClientBuilder().WithObjects(usersSecret(usersYAML())).Build())}
	d := NewDirectory(r, "latchkey-system", "latchkey-users")
	ctx := context.Background()
	for range 3 {
		if _, ok, err := d.Lookup(ctx, "carol"); err != nil || !ok {
			t.Fatalf("Lookup(carol) = %v, %v", ok, err)
		}
	}
	if n := r.gets.Load(); n != 1 {
		t.Fatalf("%d reads of an unchanged Secret, want 1", n)
	}

	var s corev1.Secret
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: "latchkey-system", Name: "latchkey-users"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data[latchkeyv1.UsersDataKey] = fmt.Appendf(nil, "- {username: alice, passwordHash: %q}\n", sampleAliceHash)
	if err := r.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Lookup(ctx, "carol"); err != nil || ok {
		t.Fatalf("after carol left: Lookup = %v, %v", ok, err)
	}
	// An unrelated write moves the revision: the Secret is read again, not parsed again.
	before := d.snap
	cm := &corev1.ConfigMap{}
	cm.Namespace, cm.Name = "latchkey-system", "unrelated"
	if err := r.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Lookup(ctx, "alice"); err != nil || !ok {
		t.Fatalf("Lookup(alice) = %v, %v", ok, err)
	}
	if d.snap != before {
		t.Fatal("an unchanged Secret was parsed again after an unrelated write")
	}
}

// BenchmarkLookup is the refresh grant's re-check of its user: the Secret read through the
// --dev object store on every call (read-per-request), and kept while the revision holds.
func BenchmarkLookup(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(client.WithWatch) client.Reader
	}{
		{"read-per-request", func(c client.WithWatch) client.Reader { return c }},
		{"revision-memo", func(c client.WithWatch) client.Reader { return revision.NewClient(c) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := NewDirectory(tc.wrap(fake.NewClientBuilder().WithObjects(usersSecret(usersYAML())).Build()), "latchkey-system", "latchkey-users")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := d.Lookup(ctx, "alice"); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
