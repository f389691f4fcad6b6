package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/keyring"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/ratelimit"
	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/tracedstore"
)

// Defaults of Options.
const (
	DefaultSigningKey  = "default"
	DefaultUsersSecret = "latchkey-users"
)

// Timeouts and limits of HTTPServer (SECURITY-CASES 96: a slow client is cut off).
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 32 << 10
	// RequestTimeout bounds one token, introspection or revocation request.
	RequestTimeout = 10 * time.Second
	// readyTimeout bounds the store ping of /readyz.
	readyTimeout = time.Second
)

// Options configure the server.
type Options struct {
	// Issuer is the exact issuer identifier. Every URL the server advertises derives from it,
	// never from the Host or X-Forwarded-* headers (RFC 8414 §3.3, SECURITY-CASES 73). An
	// issuer with a path ("https://example.com/auth") serves its endpoints under that path.
	Issuer string
	// Namespace holds the SigningKeys and the users Secret.
	Namespace string
	// SigningKey names the SigningKey to sign with (default "default").
	SigningKey string
	// UsersSecret names the users Secret (default "latchkey-users"); the code flow reads it.
	UsersSecret string
	// Reader is read-only: the manager's cache, or the --dev object store. OAuthClients are
	// found through the latchkeyv1.ClientIDIndex field index.
	Reader client.Reader
	// Store keeps all token state.
	Store store.Store
	// Clock is the one time source (nil: the real clock). Tests pass a fake clock.
	Clock clock.PassiveClock
	// Log receives request logs and errors. It never receives a token, secret or password.
	Log logr.Logger
	// Registerer receives the server's metrics (nil: none). Registering twice on one registry
	// reuses the collectors already there.
	Registerer prometheus.Registerer
	// CacheSynced reports whether the Reader's cache has synced (nil: always). Before it has,
	// /readyz fails and client lookups answer 503 rather than invalid_client.
	CacheSynced func() bool
	// TrustedProxies are the proxies whose X-Forwarded-For is believed, for logs and rate
	// limits (RFC 9700 §4.13).
	TrustedProxies []netip.Prefix
	// ClientKeyFetcher fetches private_key_jwt clients' JWKS (nil: a clients.KeyFetcher with its
	// defaults, which refuses private, loopback and link-local addresses). Tests that serve a
	// client JWKS on loopback pass one with a widened AllowAddr.
	ClientKeyFetcher *clients.KeyFetcher
	// ClientAuthFailures limits failed client authentications per client_id (zero: 100 per 5
	// minutes, ratelimit.DefaultAuthFailures). Request limits are per client, in the
	// OAuthClient's spec.rateLimit.
	ClientAuthFailures ratelimit.Limit
	// Audit receives the audit stream (nil: audit.FromLogr(Log, Registerer), so the records go
	// to Log under the name "audit").
	Audit *audit.Logger
	// Login configures the login and consent pages: session lifetimes, consent memory and
	// brute-force limits (zero fields take their defaults).
	Login LoginOptions
	// Tracing adds OpenTelemetry spans (tracing.go): an otelhttp server span per request, named
	// after its route, and a child span per store call (tracedstore). Spans go to the global
	// TracerProvider, which internal/telemetry sets from the OTEL_* environment. Off, the
	// handler has no tracing middleware and the store is not wrapped.
	Tracing bool
}

// Server is the token server. Build it with New.
type Server struct {
	opts     Options
	issuer   string
	basePath string // the issuer's path without a trailing slash, "" for a bare host
	clock    clock.PassiveClock
	log      logr.Logger
	store    store.Store
	synced   func() bool

	registry *clients.Registry
	auth     *clients.Authenticator
	limiter  *ratelimit.Limiter
	audit    *audit.Logger
	keys     *keyring.Keyring
	minter   *accesstoken.Minter
	grants   map[latchkeyv1.GrantType]grantHandler
	metrics  *metrics
	flow     *flow // the authorization code flow's pages and cookies (flow.go)

	metadata    Metadata
	metadataDoc []byte
	handler     http.Handler
}

// New validates opts and builds the server, its grant registry, its discovery document and
// its handler.
func New(opts Options) (*Server, error) {
	if opts.Issuer == "" {
		return nil, errors.New("new server: issuer is required")
	}
	base, err := validateIssuer(opts.Issuer)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if opts.Namespace == "" {
		return nil, errors.New("new server: namespace is required")
	}
	if opts.Reader == nil || opts.Store == nil {
		return nil, errors.New("new server: reader and store are required")
	}
	if opts.SigningKey == "" {
		opts.SigningKey = DefaultSigningKey
	}
	if opts.UsersSecret == "" {
		opts.UsersSecret = DefaultUsersSecret
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.Tracing {
		opts.Store = tracedstore.New(opts.Store)
	}
	synced := opts.CacheSynced
	if synced == nil {
		synced = func() bool { return true }
	}
	fetcher := opts.ClientKeyFetcher
	if fetcher == nil {
		fetcher = clients.NewKeyFetcher(clients.FetchOptions{Clock: opts.Clock})
	}

	s := &Server{
		opts:     opts,
		issuer:   opts.Issuer,
		basePath: base,
		clock:    opts.Clock,
		log:      opts.Log,
		store:    opts.Store,
		synced:   synced,
	}
	s.registry = &clients.Registry{Reader: opts.Reader, Synced: synced}
	s.auth = &clients.Authenticator{
		Registry:   s.registry,
		Assertions: opts.Store,
		Keys:       fetcher,
		Issuer:     opts.Issuer,
		Clock:      opts.Clock,
	}
	if s.audit = opts.Audit; s.audit == nil {
		if s.audit, err = audit.FromLogr(opts.Log, opts.Registerer); err != nil {
			return nil, fmt.Errorf("new server: %w", err)
		}
	}
	s.limiter = &ratelimit.Limiter{Store: opts.Store, AuthFailures: opts.ClientAuthFailures}
	s.keys = keyring.New(keyring.Options{
		Reader:     opts.Reader,
		Namespace:  opts.Namespace,
		SigningKey: opts.SigningKey,
		Clock:      opts.Clock,
		Log:        opts.Log.WithName("keyring"),
	})
	s.minter = &accesstoken.Minter{Issuer: opts.Issuer, Keys: s.keys, Clock: opts.Clock}
	if s.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if s.flow, err = newFlow(s); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if s.grants, err = buildGrants(s); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if err := s.buildMetadata(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// validateIssuer checks that issuer is an absolute http(s) URL without query or fragment
// (RFC 8414 §2) and returns its path without a trailing slash.
func validateIssuer(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("issuer: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(issuer, "#") || strings.HasSuffix(issuer, "?") {
		return "", fmt.Errorf("issuer %q must be an absolute http(s) URL without user info, query or fragment", issuer)
	}
	base := strings.TrimSuffix(u.EscapedPath(), "/")
	if strings.ContainsAny(base, "{} \t") {
		return "", fmt.Errorf("issuer %q has a path that cannot be routed", issuer)
	}
	return base, nil
}

// Handler is the whole HTTP surface, with its middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPServer is an http.Server for addr serving Handler, with every timeout and the header
// limit set (SECURITY-CASES 96: ReadHeaderTimeout defaults to none in net/http).
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{s.log}, "", 0),
	}
}

// logWriter sends net/http's own error log (TLS handshake failures, malformed requests) to
// the server's logger.
type logWriter struct{ log logr.Logger }

// Write logs one line of net/http's error log at V(1).
func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info("HTTP server", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}

// url is the absolute URL of a path under the issuer.
func (s *Server) url(path string) string {
	return strings.TrimSuffix(s.issuer, "/") + path
}

// route is the mux path of an endpoint under the issuer's path.
func (s *Server) route(path string) string { return s.basePath + path }

// now is the server's clock.
func (s *Server) now() time.Time { return s.clock.Now() }

// writeError writes err as an OAuth error response and records its outcome for the request
// log and metrics.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	oe := oautherr.Write(w, err, s.issuer)
	info := infoFrom(r.Context())
	info.outcome = oe.Code
	info.cause = oe.Cause()
}

// readyCheck reports why the server is not ready, or nil.
func (s *Server) readyCheck(ctx context.Context) error {
	if !s.synced() {
		return errors.New("cache not synced")
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
