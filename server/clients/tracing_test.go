package clients_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/latchkey-dev/latchkey/internal/revision"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
)

// Under a recording span, lookups are child spans that say whether the memo answered, with the
// client id and the outcome, and never the secret.
func TestLookupSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))

	svc, secret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	synced := true
	reg := &clients.Registry{Reader: revision.NewClient(servertest.NewReader(svc, secret)), Synced: func() bool { return synced }}
	ctx, parent := otel.Tracer("test").Start(context.Background(), "request")
	for range 2 {
		c, err := reg.Lookup(ctx, "svc")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Credentials(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Lookup(ctx, "nobody"); err == nil {
		t.Fatal("found an unknown client")
	}
	synced = false
	if _, err := reg.Lookup(ctx, "svc"); err == nil {
		t.Fatal("found a client before the cache synced")
	}
	parent.End()

	type span struct{ name, client, hit, outcome string }
	want := []span{
		{"clients.Lookup", "svc", "false", "ok"},
		{"clients.Credentials", "svc", "false", "ok"},
		{"clients.Lookup", "svc", "true", "ok"},
		{"clients.Credentials", "svc", "true", "ok"},
		{"clients.Lookup", "nobody", "false", "not_found"},
		{"clients.Lookup", "svc", "", "not_synced"},
	}
	var got []span
	for _, s := range exp.GetSpans() {
		if s.Name == "request" {
			continue
		}
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes {
			attrs[kv.Key] = kv.Value.String()
			if strings.Contains(kv.Value.String(), servertest.SecretOf(secret)) {
				t.Errorf("span %q attribute %s holds the client secret", s.Name, kv.Key)
			}
		}
		got = append(got, span{s.Name, attrs["latchkey.client_id"], attrs["latchkey.cache.hit"], attrs["latchkey.outcome"]})
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the request", s.Name)
		}
		if failed := s.Status.Code == codes.Error; failed != (attrs["latchkey.outcome"] == "not_synced") {
			t.Errorf("span %q outcome %q has status %v", s.Name, attrs["latchkey.outcome"], s.Status.Code)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("span %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
