package clients_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// countingReader counts the reads that reach the object store.
type countingReader struct {
	*revision.Client
	reads atomic.Int64
}

func (r *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.reads.Add(1)
	return r.Client.Get(ctx, key, obj, opts...)
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.reads.Add(1)
	return r.Client.List(ctx, list, opts...)
}

func authenticate(t *testing.T, a *clients.Authenticator, id, secret string) error {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	r.Header.Set("Authorization", clients.EncodeBasic(id, secret))
	_, err := a.Authenticate(context.Background(), r, httpx.Form{}, clients.Policy{})
	return err
}

// With a revision.Source reader, a client is read once per revision, and every change through
// the reader (status, Secret rotation, deletion) is seen by the very next request.
func TestRegistryRevision(t *testing.T) {
	svc, secret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	rc := &countingReader{Client: revision.NewClient(servertest.NewReader(svc, secret))}
	reg := &clients.Registry{Reader: rc}
	a := &clients.Authenticator{Registry: reg, Clock: clocktesting.NewFakeClock(servertest.Epoch)}
	ctx := context.Background()

	if err := authenticate(t, a, "svc", servertest.SecretOf(secret)); err != nil {
		t.Fatal(err)
	}
	reads := rc.reads.Load()
	for range 10 {
		if err := authenticate(t, a, "svc", servertest.SecretOf(secret)); err != nil {
			t.Fatal(err)
		}
	}
	if n := rc.reads.Load() - reads; n != 0 {
		t.Fatalf("%d reads for 10 authentications at one revision, want 0", n)
	}
	if err := authenticate(t, a, "svc", "wrong"); err == nil {
		t.Fatal("wrong secret accepted from the memo")
	}

	// The Secret is rotated: the old secret fails at once, the new one works.
	rotated := secret.DeepCopy()
	rotated.Data[latchkeyv1.ClientSecretDataClientSecret] = []byte(servertest.RandomSecret())
	servertest.Update(t, rc, rotated)
	if err := authenticate(t, a, "svc", servertest.SecretOf(secret)); err == nil {
		t.Fatal("the rotated-out secret still works")
	}
	if err := authenticate(t, a, "svc", servertest.SecretOf(rotated)); err != nil {
		t.Fatalf("new secret: %v", err)
	}

	// The controller marks the client not Ready: it is not served from then on.
	var cur latchkeyv1.OAuthClient
	if err := rc.Get(ctx, client.ObjectKeyFromObject(svc), &cur); err != nil {
		t.Fatal(err)
	}
	servertest.SetReady(&cur, metav1.ConditionFalse, "InvalidSpec")
	if err := rc.Status().Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Lookup(ctx, "svc"); !errors.Is(err, clients.ErrNotFound) {
		t.Fatalf("Lookup of a client that is no longer Ready: %v", err)
	}

	// An unknown client is remembered as unknown until something changes.
	if _, err := reg.Lookup(ctx, "nobody"); !errors.Is(err, clients.ErrNotFound) {
		t.Fatal(err)
	}
	other, otherSecret := servertest.ConfidentialClient("nobody", "apps", servertest.WithClientID("nobody"))
	if err := rc.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := rc.Create(ctx, otherSecret); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Lookup(ctx, "nobody"); err != nil {
		t.Fatalf("a client created after a failed lookup: %v", err)
	}
}

// A reader without a revision is read on every call, as before.
func TestRegistryWithoutRevision(t *testing.T) {
	svc, secret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	rc := &countingReader{Client: revision.NewClient(servertest.NewReader(svc, secret))}
	reg := &clients.Registry{Reader: plainReader{rc}}
	for range 3 {
		if _, err := reg.Lookup(context.Background(), "svc"); err != nil {
			t.Fatal(err)
		}
	}
	if n := rc.reads.Load(); n != 3 {
		t.Fatalf("%d reads for 3 lookups, want 3", n)
	}
}

// plainReader hides the revision of the reader it wraps.
type plainReader struct{ client.Reader }
