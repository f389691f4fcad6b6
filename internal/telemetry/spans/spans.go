// Package spans starts the token server's internal OpenTelemetry spans: store calls, signing
// and cache lookups. It depends on the OpenTelemetry API only; the SDK and the exporter are set
// up by internal/telemetry, once, in main.
//
// A span is started only as the child of a span that is recording (the HTTP server span of
// otelhttp, when tracing is on). With tracing off, Start is one context lookup and allocates
// nothing, so the token path costs what it did before tracing existed; and no work outside a
// traced request makes orphan root spans.
//
// Attributes never carry a token, code, secret, password or the hash of one: only client ids,
// key ids, outcomes and whether a cache answered.
package spans

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The attribute keys of Latchkey's own spans.
const (
	// ClientIDKey is the OAuth client_id a span concerns (public, never a secret).
	ClientIDKey = attribute.Key("latchkey.client_id")
	// OutcomeKey is how the operation ended: "ok" or a short error class ("not_found",
	// "unavailable", ...).
	OutcomeKey = attribute.Key("latchkey.outcome")
	// CacheHitKey says whether a memo answered without reading the object cache (SetCache).
	CacheHitKey = attribute.Key("latchkey.cache.hit")
	// KeyIDKey is the kid of the signing key (public: it is in every token header and /jwks).
	KeyIDKey = attribute.Key("latchkey.key.id")
	// AlgorithmKey is the JWS algorithm of the signing key.
	AlgorithmKey = attribute.Key("latchkey.key.alg")
)

// Outcome values shared by several packages.
const (
	OutcomeOK    = "ok"
	OutcomeError = "error"
)

// Tracer returns the tracer named after the instrumented package. It is the global provider's:
// a delegate that forwards to the provider internal/telemetry installs, and a no-op until then.
func Tracer(pkg string) trace.Tracer { return otel.Tracer(pkg) }

// noop is the span returned when no span is started; ending it does nothing.
var noop = trace.SpanFromContext(context.Background())

// Cache says how a lookup that can be memoized was answered.
type Cache uint8

// The answers of a memoized lookup.
const (
	// CacheNone: there is no memo (the Reader keeps no revision, as the manager's informer
	// cache does), so every call reads the object cache. latchkey.cache.hit is not set.
	CacheNone Cache = iota
	// CacheMiss: the memo had no answer, and the objects were read.
	CacheMiss
	// CacheHit: the memo answered without reading anything.
	CacheHit
)

// SetCache records latchkey.cache.hit on span, unless c is CacheNone.
func SetCache(span trace.Span, c Cache) {
	if c != CacheNone && span.IsRecording() {
		span.SetAttributes(CacheHitKey.Bool(c == CacheHit))
	}
}

// Start starts span name as a child of the span in ctx, if that one is recording. Otherwise it
// returns ctx unchanged and a non-recording span, allocating nothing. Callers set attributes
// only after checking span.IsRecording(), so that building them costs nothing either.
func Start(ctx context.Context, tracer trace.Tracer, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop
	}
	return tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// End records outcome on span and ends it. failed marks the span as an error: a backend
// failure or a bug, not a refusal that is part of the protocol (an unknown client, a reused
// code), which is an outcome like any other. The error's text is not recorded: store and cache
// errors can name keys and objects, and the log already has the cause.
func End(span trace.Span, outcome string, failed bool) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(OutcomeKey.String(outcome))
	if failed {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}
