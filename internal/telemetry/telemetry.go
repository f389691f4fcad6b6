// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_* environment
// variables, and does nothing unless they ask for it.
//
// Tracing is on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set,
// unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. It then installs, as the global
// provider, an SDK TracerProvider that batches spans to an OTLP exporter (http/protobuf by
// default, or grpc as OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL says), and the W3C trace-context and
// baggage propagators. The exporter reads the rest of its configuration
// (headers, timeout, compression, TLS) from OTEL_EXPORTER_OTLP_*, the sampler from
// OTEL_TRACES_SAMPLER(_ARG), the batch processor from OTEL_BSP_*, and the resource from
// OTEL_SERVICE_NAME (default "latchkey") and OTEL_RESOURCE_ATTRIBUTES.
//
// Off, nothing is installed: the global provider stays the API's no-op, the server adds no
// HTTP middleware, and its internal spans (package spans) are never started.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
)

// DefaultServiceName is service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES
// names another.
const DefaultServiceName = "latchkey"

// The environment variables this package reads itself; the SDK and the exporter read the others.
const (
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// Options configure Setup.
type Options struct {
	// ServiceVersion is service.version (the binary's version).
	ServiceVersion string
	// Log receives the SDK's own warnings and export errors (nil sink: discarded).
	Log logr.Logger
}

// Tracing is the installed tracing, or none. The zero value and nil are "off".
type Tracing struct {
	tp       *sdktrace.TracerProvider
	protocol string
}

// Protocol is the OTLP protocol spans are exported with ("" when tracing is off).
func (t *Tracing) Protocol() string {
	if t == nil {
		return ""
	}
	return t.protocol
}

// Enabled reports whether tracing is on: the server then adds its HTTP spans.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// Shutdown flushes the spans still queued and stops the exporter, within ctx's deadline. It is
// a no-op when tracing is off, and safe to call more than once.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}

// Config is what the environment asks for, as Setup reads it.
type Config struct {
	// Enabled: an OTLP endpoint is set and nothing turns tracing off.
	Enabled bool
	// Protocol is the OTLP transport when Enabled: ProtocolHTTP or ProtocolGRPC.
	Protocol string
	// Reason says why tracing is off ("" when on).
	Reason string
}

// The OTLP protocols, as OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL names them. http/protobuf is the
// default the OpenTelemetry specification gives.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// FromEnv decides from the environment whether tracing is on. It fails for a configuration
// Latchkey cannot honour (another exporter, another OTLP protocol) rather than ignore it.
func FromEnv(getenv func(string) string) (Config, error) {
	if strings.EqualFold(strings.TrimSpace(getenv(envSDKDisabled)), "true") {
		return Config{Reason: envSDKDisabled + "=true"}, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv(envTracesExporter))); exp {
	case "", "otlp":
	case "none":
		return Config{Reason: envTracesExporter + "=none"}, nil
	default:
		return Config{}, fmt.Errorf("%s=%q: only otlp and none are supported", envTracesExporter, exp)
	}
	if getenv(envTracesEndpoint) == "" && getenv(envEndpoint) == "" {
		return Config{Reason: "no OTLP endpoint set"}, nil
	}
	protocol := strings.TrimSpace(getenv(envTracesProtocol))
	if protocol == "" {
		protocol = strings.TrimSpace(getenv(envProtocol))
	}
	switch protocol {
	case "":
		protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return Config{}, fmt.Errorf("OTLP protocol %q: only %s and %s are supported", protocol, ProtocolHTTP, ProtocolGRPC)
	}
	return Config{Enabled: true, Protocol: protocol}, nil
}

// Setup installs tracing if the environment asks for it (FromEnv) and returns it; call
// Shutdown on exit. When tracing is off it installs nothing and returns a Tracing whose
// Enabled is false.
func Setup(ctx context.Context, o Options) (*Tracing, error) {
	cfg, err := FromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if !cfg.Enabled {
		return &Tracing{}, nil
	}
	log := o.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}

	// Later detectors win: the default name, then the SDK's attributes, then the environment.
	attrs := []attribute.KeyValue{semconv.ServiceName(DefaultServiceName)}
	if o.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.ServiceVersion))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// The exporter connects lazily: an unreachable collector costs dropped spans and an error
	// in the log, never a failed start or a slower token.
	var exp sdktrace.SpanExporter
	if cfg.Protocol == ProtocolGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
	)
	otel.SetLogger(log)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Error(err, "OpenTelemetry error")
	}))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Tracing{tp: tp, protocol: cfg.Protocol}, nil
}
