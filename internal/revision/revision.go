// Package revision lets the token server skip object reads on its hot paths.
//
// The server reads OAuthClients, their Secrets, SigningKeys, key Secrets and JWKS ConfigMaps on
// every token request. Through controller-runtime's fake client (the object store of --dev and
// of the tests), every read is a deep copy through JSON: five reads cost more than the ES256
// signature the request is for. A Reader that also implements Source tells its users when
// anything it holds may have changed, so they can keep what they derived from it (a client, its
// secret's digest, the signer of the active key) until then.
//
// Client wraps a client.WithWatch and implements Source by counting its writes; --dev builds
// its object store with it. A Reader that does not implement Source is simply read every time.
package revision

import (
	"context"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Source is implemented by a Reader that can say whether its objects changed.
//
// Revision increases after every change to the objects the Reader serves has completed. A user
// that reads r := Revision() before it reads objects may keep what it derived from them under
// r: as long as Revision() still returns r, no change completed since before those reads
// began, so what it derived is as current as a fresh read would be.
type Source interface {
	Revision() uint64
}

// Of returns r's Source, if it has one.
func Of(r client.Reader) (Source, bool) {
	s, ok := r.(Source)
	return s, ok
}

// Client is a client.WithWatch whose Revision counts the writes made through it, the status
// and other subresources included. Every write must go through it (in --dev, the reconcilers
// and the token server share one Client), or Revision does not see the change.
type Client struct {
	client.WithWatch
	rev atomic.Uint64
}

var _ Source = (*Client)(nil)

// NewClient wraps c.
func NewClient(c client.WithWatch) *Client { return &Client{WithWatch: c} }

// Revision counts the writes that have returned, failed ones included (a failed write may
// still have changed something; a spurious increment only costs one re-read).
func (c *Client) Revision() uint64 { return c.rev.Load() }

// bump runs after a write has returned, never before: a reader that saw the old revision and
// then read the old objects must see a new revision once the write is visible.
func (c *Client) bump() { c.rev.Add(1) }

// Apply applies obj and counts the write.
func (c *Client) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	defer c.bump()
	return c.WithWatch.Apply(ctx, obj, opts...)
}

// Create creates obj and counts the write.
func (c *Client) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	defer c.bump()
	return c.WithWatch.Create(ctx, obj, opts...)
}

// Delete deletes obj and counts the write.
func (c *Client) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	defer c.bump()
	return c.WithWatch.Delete(ctx, obj, opts...)
}

// Update updates obj and counts the write.
func (c *Client) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	defer c.bump()
	return c.WithWatch.Update(ctx, obj, opts...)
}

// Patch patches obj and counts the write.
func (c *Client) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	defer c.bump()
	return c.WithWatch.Patch(ctx, obj, patch, opts...)
}

// DeleteAllOf deletes the matching objects and counts the write.
func (c *Client) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	defer c.bump()
	return c.WithWatch.DeleteAllOf(ctx, obj, opts...)
}

// Status returns the status writer, counting its writes.
func (c *Client) Status() client.SubResourceWriter {
	return subResourceClient{SubResourceReader: nil, SubResourceWriter: c.WithWatch.Status(), c: c}
}

// SubResource returns the subresource client, counting its writes.
func (c *Client) SubResource(name string) client.SubResourceClient {
	sc := c.WithWatch.SubResource(name)
	return subResourceClient{SubResourceReader: sc, SubResourceWriter: sc, c: c}
}

type subResourceClient struct {
	client.SubResourceReader
	client.SubResourceWriter
	c *Client
}

func (s subResourceClient) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	defer s.c.bump()
	return s.SubResourceWriter.Create(ctx, obj, sub, opts...)
}

func (s subResourceClient) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	defer s.c.bump()
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s subResourceClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	defer s.c.bump()
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (s subResourceClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	defer s.c.bump()
	return s.SubResourceWriter.Apply(ctx, obj, opts...)
}

// Memo keeps values derived from a Source's objects at one revision. Values of an older
// revision are dropped the first time a newer one is seen. It is safe for concurrent use; the
// zero value is ready.
type Memo[K comparable, V any] struct {
	mu  sync.RWMutex
	rev uint64
	m   map[K]V
}

// Get returns the value of k derived at revision rev.
func (m *Memo[K, V]) Get(rev uint64, k K) (V, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.m == nil || m.rev != rev {
		var zero V
		return zero, false
	}
	v, ok := m.m[k]
	return v, ok
}

// Put stores v, derived from reads that began at revision rev, unless the memo already holds
// a newer revision or max values. The bound keeps a flood of distinct keys (made-up client
// ids) from growing it: past it, those keys are read every time.
func (m *Memo[K, V]) Put(rev uint64, k K, v V, max int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || rev > m.rev {
		m.rev, m.m = rev, map[K]V{}
	}
	if rev == m.rev && len(m.m) < max {
		m.m[k] = v
	}
}
