// Command notes-api is a small resource server protected by Latchkey access tokens, built on
// github.com/latchkey-dev/latchkey/verifier. It serves:
//
//	GET /api/protected  any valid access token for its audience
//	GET /api/admin      a token whose roles include "admin"
//	GET /healthz        no token
//
// Configuration (a flag wins over its environment variable):
//
//	-issuer     LATCHKEY_ISSUER      issuer URL (default http://localhost:8080, the `make run` issuer)
//	-audience   NOTES_API_AUDIENCE   this API's audience: tokens must carry it in aud (required)
//	-listen     NOTES_API_LISTEN     listen address (default 127.0.0.1:8081; use :8081 in a pod)
//	-jwks-file  LATCHKEY_JWKS_FILE   a mounted "<signingkey>-jwks" ConfigMap's jwks.json, instead
//	                                 of fetching the issuer's jwks_uri (optional)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/latchkey-dev/latchkey/verifier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], os.Getenv, logger); err != nil {
		logger.Error("Exiting", "error", err)
		os.Exit(1)
	}
}

type config struct {
	issuer   string
	audience string
	listen   string
	jwksFile string
}

func parseConfig(args []string, getenv func(string) string) (config, error) {
	envOr := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var cfg config
	fs := flag.NewFlagSet("notes-api", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.issuer, "issuer", envOr("LATCHKEY_ISSUER", "http://localhost:8080"), "issuer URL")
	fs.StringVar(&cfg.audience, "audience", envOr("NOTES_API_AUDIENCE", ""), "this API's audience (required)")
	fs.StringVar(&cfg.listen, "listen", envOr("NOTES_API_LISTEN", "127.0.0.1:8081"), "listen address")
	fs.StringVar(&cfg.jwksFile, "jwks-file", envOr("LATCHKEY_JWKS_FILE", ""), "JWKS file (a mounted ConfigMap) instead of the jwks_uri")
	if err := fs.Parse(args); err != nil {
		return config{}, fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("parse flags: unexpected argument %q", fs.Arg(0))
	}
	if cfg.audience == "" {
		return config{}, errors.New("parse flags: -audience (or NOTES_API_AUDIENCE) is required")
	}
	return cfg, nil
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger) error {
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	opts := []verifier.Option{verifier.WithAudience(cfg.audience)}
	if cfg.jwksFile != "" {
		opts = append(opts, verifier.WithJWKSFile(cfg.jwksFile))
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := verifier.New(startCtx, cfg.issuer, opts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newServer(newHandler(v, logger))
	logger.Info("Listening", "addr", ln.Addr().String(), "issuer", cfg.issuer, "audience", cfg.audience)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("Stopped")
	return nil
}

// newServer sets every timeout, so a slow client cannot hold a connection open forever, and a
// header limit that fits a token with room to spare.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
}

// newHandler is the API's routes.
func newHandler(v *verifier.Verifier, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /api/protected", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verifier.ClaimsFromContext(r.Context())
		writeJSON(w, logger, whoami{
			Message:  "hello " + c.Subject(),
			Subject:  c.Subject(),
			ClientID: c.ClientID(),
			Client:   c.IsClient(),
			Scopes:   c.Scopes(),
			Roles:    c.Roles(),
			Expires:  c.ExpiresAt().UTC().Format(time.RFC3339),
		})
	})))
	mux.Handle("GET /api/admin", v.RequireRole("admin")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verifier.ClaimsFromContext(r.Context())
		writeJSON(w, logger, map[string]string{"message": "hello admin " + c.Subject()})
	})))
	return mux
}

type whoami struct {
	Message  string   `json:"message"`
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Client   bool     `json:"client"`
	Scopes   []string `json:"scopes"`
	Roles    []string `json:"roles,omitempty"`
	Expires  string   `json:"expires"`
}

func writeJSON(w http.ResponseWriter, logger *slog.Logger, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		logger.Error("Writing response", "error", err)
	}
}
