package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/latchkey-dev/latchkey/internal/telemetry"
)

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		enabled  bool
		protocol string
		wantErr  string
	}{
		{name: "nothing set is off", env: nil},
		{name: "an exporter without an endpoint is off", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "an endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			enabled: true, protocol: "http/protobuf"},
		{name: "a traces endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
			enabled: true, protocol: "http/protobuf"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			enabled: true, protocol: "grpc"},
		{name: "the traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			enabled: true, protocol: "http/protobuf"},
		{name: "the SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "another exporter fails", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "zipkin"},
			wantErr: "only otlp and none"},
		{name: "another protocol fails", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			wantErr: "only http/protobuf and grpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := telemetry.FromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Enabled != tc.enabled || cfg.Protocol != tc.protocol {
				t.Errorf("enabled %v protocol %q, want %v %q", cfg.Enabled, cfg.Protocol, tc.enabled, tc.protocol)
			}
			if !cfg.Enabled && cfg.Reason == "" {
				t.Error("off without a reason")
			}
		})
	}
}

// clearEnv unsets every variable that could turn tracing on from the test's environment.
func clearEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_HEADERS"} {
		t.Setenv(k, "")
	}
}

func TestSetupOffInstallsNothing(t *testing.T) {
	clearEnv(t)
	before := otel.GetTracerProvider()
	tr, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || tr.Protocol() != "" {
		t.Error("tracing on with no endpoint set")
	}
	if otel.GetTracerProvider() != before {
		t.Error("Setup replaced the global provider with tracing off")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of tracing off: %v", err)
	}
}

func TestSetupBadConfigFails(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	if _, err := telemetry.Setup(context.Background(), telemetry.Options{}); err == nil {
		t.Fatal("Setup accepted OTEL_TRACES_EXPORTER=console")
	}
}

// collector receives OTLP trace exports, over HTTP or gRPC.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	paths    []string
}

func (c *collector) add(req *collectortrace.ExportTraceServiceRequest, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, req)
	c.paths = append(c.paths, path)
}

// Export implements the gRPC trace service.
func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.add(req, "grpc")
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// ServeHTTP implements OTLP/HTTP with protobuf bodies.
func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad protobuf", http.StatusBadRequest)
		return
	}
	c.add(&req, r.URL.Path)
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

// exported returns the span names and resource attributes the collector received.
func (c *collector) exported() (paths, spans []string, resource map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resource = map[string]string{}
	for _, req := range c.requests {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				resource[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					spans = append(spans, s.GetName())
				}
			}
		}
	}
	return c.paths, spans, resource
}

// Setup with an endpoint exports to a real OTLP receiver, with the resource the environment
// names, and Shutdown flushes what is queued: nothing was exported before it.
func TestSetupExports(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		wantPath string
	}{
		{"http/protobuf", "/v1/traces"},
		{"grpc", "grpc"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			clearEnv(t)
			col := &collector{}
			var endpoint string
			if tc.protocol == "grpc" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				gs := grpc.NewServer()
				collectortrace.RegisterTraceServiceServer(gs, col)
				go func() { _ = gs.Serve(ln) }()
				t.Cleanup(gs.Stop)
				endpoint = "http://" + ln.Addr().String()
				t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
			} else {
				srv := httptest.NewServer(col)
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_SERVICE_NAME", "latchkey-test")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci")
			// The batch processor would wait this long before exporting by itself: only the
			// flush of Shutdown can deliver the span within the test.
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")

			tr, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceVersion: "v9.9.9"})
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Enabled() || tr.Protocol() != tc.protocol {
				t.Fatalf("enabled %v protocol %q, want on with %q", tr.Enabled(), tr.Protocol(), tc.protocol)
			}
			_, span := otel.Tracer("test").Start(context.Background(), "hello")
			if !span.IsRecording() {
				t.Fatal("the global provider does not record")
			}
			span.End()
			if _, spans, _ := col.exported(); len(spans) != 0 {
				t.Fatalf("exported %v before Shutdown", spans)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			paths, spans, res := col.exported()
			if len(spans) != 1 || spans[0] != "hello" {
				t.Fatalf("exported spans %v, want [hello]", spans)
			}
			if paths[0] != tc.wantPath {
				t.Errorf("exported to %q, want %q", paths[0], tc.wantPath)
			}
			for k, want := range map[string]string{
				"service.name":                "latchkey-test",
				"service.version":             "v9.9.9",
				"deployment.environment.name": "ci",
				"telemetry.sdk.language":      "go",
			} {
				if res[k] != want {
					t.Errorf("resource %s = %q, want %q", k, res[k], want)
				}
			}
		})
	}
}

func TestSetupDefaultServiceName(t *testing.T) {
	clearEnv(t)
	col := &collector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/custom/traces")
	tr, err := telemetry.Setup(context.Background(), telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "hello")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	paths, _, res := col.exported()
	if len(paths) != 1 || paths[0] != "/custom/traces" {
		t.Errorf("exported to %v, want /custom/traces (the traces endpoint is used as is)", paths)
	}
	if res["service.name"] != telemetry.DefaultServiceName {
		t.Errorf("service.name %q, want %q", res["service.name"], telemetry.DefaultServiceName)
	}
}
