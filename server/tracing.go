package server

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
	"github.com/latchkey-dev/latchkey/server/httpx"
)

// The attributes the server adds to otelhttp's HTTP server span. Like the request log, they
// never hold a token, code or secret: the URL query (where /authorize carries state, nonce and
// code_challenge) and the body are never recorded, and span names are route patterns.
const (
	endpointKey  = attribute.Key("latchkey.endpoint")
	grantTypeKey = attribute.Key("latchkey.grant_type")
	requestIDKey = attribute.Key("latchkey.request_id")
)

// traceHTTP wraps h, the whole handler, in otelhttp's server span when tracing is on
// (Options.Tracing; otherwise each trace* middleware returns its handler as it is). The span is named "{method}" until traceRoute renames it after the route
// that served the request, so an unrouted request (404) never gets its raw path as a name.
// Probes are not traced: a kubelet polls them every few seconds.
func (s *Server) traceHTTP(h http.Handler) http.Handler {
	if !s.opts.Tracing {
		return h
	}
	healthz, readyz := s.route(pathHealthz), s.route(pathReadyz)
	return otelhttp.NewHandler(h, "latchkey",
		otelhttp.WithFilter(func(r *http.Request) bool {
			return r.URL.Path != healthz && r.URL.Path != readyz
		}),
	)
}

// traceRoute names the request's span after the route pattern that matched ("POST /token"),
// and sets http.route, as the OpenTelemetry HTTP conventions ask. otelhttp cannot see the
// pattern itself: the middleware between it and the mux passes copies of the request. With no
// recording span it only calls h.
func (s *Server) traceRoute(pattern string, h http.Handler) http.Handler {
	if !s.opts.Tracing {
		return h
	}
	method, route, hasMethod := strings.Cut(pattern, " ")
	if !hasMethod {
		method, route = "", pattern
	}
	name := method + " " + route
	routeAttr := semconv.HTTPRoute(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			if method != "" {
				span.SetName(name)
			} else {
				span.SetName(spanMethod(r.Method) + " " + route)
			}
			span.SetAttributes(routeAttr)
		}
		h.ServeHTTP(w, r)
	})
}

// spanMethod is the method for a span name: a standard method, else "HTTP" (OpenTelemetry HTTP
// conventions), so a client cannot mint span names.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	default:
		return "HTTP"
	}
}

// traceRequest adds what the handler learnt (requestInfo: endpoint, grant, client, outcome) and
// the request id to the HTTP span, once the handler is done. It replaces otelhttp's
// client.address, which believes any X-Forwarded-For, with the address the server trusts
// (Options.TrustedProxies, as the log has it). It runs inside observe, which makes the info.
func (s *Server) traceRequest(next http.Handler) http.Handler {
	if !s.opts.Tracing {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		info := infoFrom(r.Context())
		attrs := []attribute.KeyValue{
			endpointKey.String(info.endpoint),
			requestIDKey.String(httpx.RequestID(r.Context())),
		}
		if info.outcome != "" {
			attrs = append(attrs, spans.OutcomeKey.String(info.outcome))
		}
		if info.grant != "" {
			attrs = append(attrs, grantTypeKey.String(info.grant))
		}
		if info.clientID != "" {
			attrs = append(attrs, spans.ClientIDKey.String(info.clientID))
		}
		if ip := httpx.ClientIP(r, s.opts.TrustedProxies); ip.IsValid() {
			attrs = append(attrs, semconv.ClientAddress(ip.String()))
		}
		span.SetAttributes(attrs...)
	})
}
