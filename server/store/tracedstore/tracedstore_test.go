package tracedstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/memstore"
	"github.com/latchkey-dev/latchkey/server/store/storetest"
	"github.com/latchkey-dev/latchkey/server/store/tracedstore"
)

// The wrapped store is the same store: it passes the whole conformance suite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return tracedstore.New(memstore.New()) })
}

func TestNewDoesNotWrapTwice(t *testing.T) {
	s := tracedstore.New(memstore.New())
	if tracedstore.New(s) != s {
		t.Error("New wrapped a traced store again")
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err     error
		outcome string
		failed  bool
	}{
		{nil, "ok", false},
		{store.ErrNotFound, "not_found", false},
		{fmt.Errorf("rotate: %w", store.ErrRefreshReused), "refresh_reused", false},
		{store.ErrCodeReused, "code_reused", false},
		{store.ErrRevoked, "revoked", false},
		{store.ErrClientMismatch, "client_mismatch", false},
		{store.ErrReplay, "replay", false},
		{fmt.Errorf("%w: dial tcp: connection refused", store.ErrUnavailable), "unavailable", true},
		{errors.New("something else"), "error", true},
	} {
		outcome, failed := tracedstore.Outcome(tc.err)
		if outcome != tc.outcome || failed != tc.failed {
			t.Errorf("Outcome(%v) = %q, %v; want %q, %v", tc.err, outcome, failed, tc.outcome, tc.failed)
		}
	}
}

// Calls made under a recording span are its children, named store.<Method>, with the client
// and the outcome; no argument that is (or hashes) a secret is recorded.
func TestSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))

	s := tracedstore.New(memstore.New())
	now := storetest.Now()
	f := storetest.NewFamily(t, s, now) // no parent span: not traced

	ctx, parent := otel.Tracer("test").Start(context.Background(), "request")
	newRefresh := storetest.Secret(t)
	if _, err := s.RotateRefresh(ctx, store.RotateParams{
		Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(newRefresh),
		ClientID: f.Grant.ClientID, IdleLifetime: f.Idle,
		AccessToken: store.AccessTokenRecord{JTI: f.Family + ".next", ClientID: f.Grant.ClientID, ExpiresAt: now.Add(time.Minute)},
	}, now); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if _, err := s.LookupRefresh(ctx, f.Family, store.Hash(f.Refresh), now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup of the rotated token: %v", err)
	}
	if err := s.UseAssertion(ctx, "svc", "jti-1", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := s.UseAssertion(ctx, "svc", "jti-1", now.Add(time.Minute), now); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("replayed assertion: %v", err)
	}
	if _, _, err := s.Hit(ctx, "login:alice", 1, time.Minute, now); err != nil {
		t.Fatal(err)
	}
	parent.End()

	type want struct{ client, outcome string }
	wants := []struct {
		name string
		want
	}{
		{"store.RotateRefresh", want{f.Grant.ClientID, "ok"}},
		{"store.LookupRefresh", want{"", "not_found"}},
		{"store.UseAssertion", want{"svc", "ok"}},
		{"store.UseAssertion", want{"svc", "replay"}},
		{"store.Hit", want{"", "ok"}},
	}
	var got []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name != "request" {
			got = append(got, sp)
		}
	}
	if len(got) != len(wants) {
		t.Fatalf("%d spans, want %d (the fixture's calls had no parent and must not be traced)", len(got), len(wants))
	}
	for i, w := range wants {
		sp := got[i]
		attrs := map[attribute.Key]string{}
		for _, kv := range sp.Attributes {
			attrs[kv.Key] = kv.Value.String()
			for _, secret := range []string{f.Refresh, store.Hash(f.Refresh), newRefresh, store.Hash(newRefresh), f.Family, "jti-1", "alice"} {
				if strings.Contains(kv.Value.String(), secret) {
					t.Errorf("span %q attribute %s records an argument it must not", sp.Name, kv.Key)
				}
			}
		}
		if sp.Name != w.name || attrs["latchkey.client_id"] != w.client || attrs["latchkey.outcome"] != w.outcome {
			t.Errorf("span %d: %q client %q outcome %q; want %q %q %q", i, sp.Name,
				attrs["latchkey.client_id"], attrs["latchkey.outcome"], w.name, w.client, w.outcome)
		}
		if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the request span", sp.Name)
		}
		if sp.Status.Code == codes.Error {
			t.Errorf("span %q has status error for an expected answer", sp.Name)
		}
	}
}
