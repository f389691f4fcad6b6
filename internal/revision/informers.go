package revision

import (
	"context"
	"fmt"
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Informed is the manager's cache as a Reader that implements Source: its revision counts the
// events of the informers of the kinds the token server reads. Without it, the server in a
// cluster deep-copies the OAuthClient, its Secret, the SigningKey, its ConfigMap and key
// Secrets and the users Secret on every request, which costs more than the signature
// (docs/benchmarks.md).
//
// An informer calls its handlers after its store holds the new object, so a bump always
// follows the change it reports, as Source requires. Handlers run asynchronously, so a change
// may be seen by a fresh read a moment before the revision moves; that only costs a re-read.
type Informed struct {
	client.Reader
	rev atomic.Uint64
}

var _ Source = (*Informed)(nil)

// NewInformed wraps c and counts the events of the informers for objs (one object per kind).
// It may be called before the cache starts; it does not wait for the informers to sync.
func NewInformed(ctx context.Context, c cache.Cache, objs ...client.Object) (*Informed, error) {
	in := &Informed{Reader: c}
	bump := func() { in.rev.Add(1) }
	h := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { bump() },
		UpdateFunc: func(any, any) { bump() },
		DeleteFunc: func(any) { bump() },
	}
	for _, obj := range objs {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("revision: informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("revision: event handler for %T: %w", obj, err)
		}
	}
	return in, nil
}

// Revision implements Source.
func (in *Informed) Revision() uint64 { return in.rev.Load() }
