// Command latchkey is an OAuth 2.1 authorization server for Kubernetes and the operator that
// runs it. One binary, one Deployment: the controllers reconcile OAuthClient and SigningKey
// resources (leader only), and every replica serves tokens from the manager's cache with its
// mutable state in Redis. `latchkey --dev` serves a working issuer with no cluster and no Redis.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/latchkey-dev/latchkey/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "latchkey: %v\n", err)
		os.Exit(1)
	}
}

// run parses the flags and runs Latchkey until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	tracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceVersion: version, Log: log.WithName("otel")})
	if err != nil {
		return err
	}
	if tracing.Enabled() {
		log.Info("OpenTelemetry tracing enabled", "exporter", "otlp", "protocol", tracing.Protocol())
	}
	defer shutdownTracing(tracing, log)
	if cfg.Dev {
		return runDev(ctx, cfg, log, stdout, tracing.Enabled())
	}
	return runCluster(ctx, cfg, log, tracing.Enabled())
}

// tracingShutdownTimeout bounds the flush of the spans still queued at exit, so an unreachable
// collector cannot hold up a shutdown.
const tracingShutdownTimeout = 5 * time.Second

// shutdownTracing flushes and stops tracing. ctx of run has ended by then, so it gets its own.
func shutdownTracing(t *telemetry.Tracing, log logr.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Error(err, "Tracing shutdown failed; queued spans were dropped")
	}
}
