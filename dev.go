package main

import (
	"context"
	"io"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/latchkey-dev/latchkey/internal/devmode"
)

// runDev serves the issuer with no cluster: objects from --manifests, state in memory (or
// --redis-url). The reconcilers and the token server are the same code as in a cluster.
// tracing turns the server's OpenTelemetry spans on (internal/telemetry has set the provider).
func runDev(ctx context.Context, cfg Config, log logr.Logger, stdout io.Writer, tracing bool) error {
	ctrl.SetLogger(log)
	return devmode.Run(ctx, devmode.Options{
		Scheme:                  newScheme(),
		Manifests:               cfg.Manifests,
		Listen:                  cfg.Listen,
		Issuer:                  cfg.Issuer,
		RedisURL:                cfg.RedisURL,
		Namespace:               cfg.Namespace,
		SigningKey:              cfg.SigningKey,
		UsersSecret:             cfg.UsersSecret,
		ClientSecretGracePeriod: cfg.ClientSecretGracePeriod,
		Log:                     log,
		Out:                     stdout,
		Tracing:                 tracing,
	})
}
