package spans_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
)

// With no recording span in the context, Start starts nothing and allocates nothing: the
// token path pays no more than a context lookup when tracing is off.
func TestStartWithoutParentIsFree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := spans.Start(ctx, tracer, "child")
		if c != ctx || span.IsRecording() {
			t.Fatal("Start without a recording parent started a span")
		}
		if span.IsRecording() {
			span.SetAttributes(spans.ClientIDKey.String("svc"))
		}
		spans.End(span, spans.OutcomeOK, false)
	})
	if allocs != 0 {
		t.Errorf("Start and End without a parent: %v allocations, want 0", allocs)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported, want none", n)
	}
}

func TestStartUnderRecordingParent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
	ctx, parent := tracer.Start(context.Background(), "parent")

	_, ok := spans.Start(ctx, tracer, "ok")
	spans.End(ok, spans.OutcomeOK, false)
	_, refused := spans.Start(ctx, tracer, "refused")
	spans.End(refused, "not_found", false)
	_, failed := spans.Start(ctx, tracer, "failed")
	spans.End(failed, "unavailable", true)
	parent.End()

	got := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		got[s.Name] = s
	}
	for name, want := range map[string]struct {
		outcome string
		status  codes.Code
	}{
		"ok":      {"ok", codes.Unset},
		"refused": {"not_found", codes.Unset},
		"failed":  {"unavailable", codes.Error},
	} {
		s, found := got[name]
		if !found {
			t.Errorf("no span %q", name)
			continue
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the parent", name)
		}
		var outcome string
		for _, kv := range s.Attributes {
			if kv.Key == spans.OutcomeKey {
				outcome = kv.Value.AsString()
			}
		}
		if outcome != want.outcome || s.Status.Code != want.status {
			t.Errorf("span %q: outcome %q status %v, want %q %v", name, outcome, s.Status.Code, want.outcome, want.status)
		}
	}
}

// BenchmarkStartNoParent is the whole cost of a span with tracing off, in a context as deep as
// a token request's (the server's middleware adds about ten values).
func BenchmarkStartNoParent(b *testing.B) {
	tracer := sdktrace.NewTracerProvider().Tracer("bench")
	ctx := context.Background()
	for i := range 10 {
		ctx = context.WithValue(ctx, ctxKey(i), i)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, span := spans.Start(ctx, tracer, "child")
		spans.End(span, spans.OutcomeOK, false)
	}
}

type ctxKey int
