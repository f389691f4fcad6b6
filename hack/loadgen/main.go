// Command loadgen measures Latchkey's token server the way its users load it, and the raw
// signature rates the server is measured against.
//
//	loadgen [flags]            run one workload and print one JSON line (a Result)
//	loadgen report [flags]     turn the JSON lines of a `make bench` run into docs/benchmarks.md
//	                           and docs/images/benchmarks.svg
//
// Workloads (-workload):
//
//	cc          POST /token grant_type=client_credentials, client_secret_basic
//	code        the authorization-code flow as a browser drives it: /authorize, the login form
//	            (its CSRF token and cookies), the consent form when shown, the redirect with the
//	            code, then POST /token with the PKCE verifier; every flow is a new browser
//	refresh     POST /token grant_type=refresh_token; each worker keeps its own refresh chain,
//	            started with one code flow (scope -refresh-scope)
//	introspect  POST /introspect of a JWT access token, as a resource server would
//	jwks        GET /jwks
//	verify      verifier.Verify of a JWT access token, in this process (the JWKS comes from the
//	            server once)
//	raw-sign    go-jose ES256 Sign + CompactSerialize of an access-token payload, in this
//	            process: the limit of cc and refresh
//	raw-verify  go-jose ParseSignedCompact + Verify of an ES256 token, in this process: the
//	            limit of introspect and verify
//	raw-sign-rs256, raw-sign-eddsa
//	            raw-sign with RS256 (RSA 2048) and EdDSA (Ed25519), to compare the algorithms
//	tls-handshake
//	            a full TLS 1.3 handshake (ECDSA P-256 certificate, X25519), both ends in this
//	            process over an in-memory pipe: what a client that does not keep its
//	            connection alive adds to every token
//
// Every workload runs -c closed-loop workers: each sends a request, waits for the answer and
// sends the next. The first -warmup is not counted; then requests are counted for -d. The
// endpoints come from the issuer's discovery document, never from fixed paths. HTTP runs over
// keep-alive connections (one per worker), as a real client should: a new TLS or even TCP
// connection per token would measure the handshake, not the server. The API workloads (cc,
// refresh, introspect, jwks) speak HTTP/1.1 with a small hand-written client (wire.go) so that
// the load generator, on its one CPU, costs less than the server it drives; -net-http uses
// net/http instead. The code workload, and the code flows that start refresh chains, use
// net/http with a cookie jar, like a browser.
//
// The raw workloads and verify run in this process, so pin loadgen where the server would run
// (taskset, GOMAXPROCS) to compare rates on one CPU; hack/bench.sh does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

// config is the command line of a measurement.
type config struct {
	issuer      string
	workload    string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	netHTTP     bool
	// rate, when positive, paces the workers to this many requests per second in total (the
	// soak's steady load); 0 is closed-loop at full speed.
	rate float64
	// familyAge, when positive, makes a refresh worker start a new family once its current one
	// is this old, so the soak's families (short-lived on purpose) end before they expire.
	familyAge time.Duration

	// serverPID, when set, is the server's process: its CPU time over the window is reported.
	serverPID int

	clientID     string
	clientSecret string
	scope        string
	audience     string

	publicClient string
	redirectURI  string
	codeScope    string
	refreshScope string
	username     string
	password     string
}

// The defaults are the --dev sample objects in config/samples: they are published, dev-only
// credentials.
const (
	defaultIssuer       = "http://127.0.0.1:8080"
	defaultClientID     = "demo-service"
	defaultClientSecret = "dev-only-secret-7d2f1c9a4e8b6d3f0a5c2e9b7d4f1a8c"
	defaultAudience     = "notes-api"
	defaultPublicClient = "demo-spa"
	defaultRedirectURI  = "http://127.0.0.1/demo/callback"
	defaultCodeScope    = "openid offline_access notes.read"
	// The refresh workload measures the OAuth rotation: without openid, no ID token is signed
	// on refresh (OpenID Connect Core §12.2 makes it optional; Latchkey signs one when the
	// grant has openid, which doubles the signatures).
	defaultRefreshScope = "offline_access notes.read"
	defaultUsername     = "alice"
	defaultPassword     = "latchkey-demo"
)

var workloads = []string{"cc", "code", "refresh", "introspect", "jwks", "verify",
	"raw-sign", "raw-sign-rs256", "raw-sign-eddsa", "raw-verify", "tls-handshake"}

// inProcess reports whether workload w needs no server at all.
func inProcess(w string) bool { return strings.HasPrefix(w, "raw-") || w == "tls-handshake" }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := measureWorkload(ctx, cfg)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.issuer, "issuer", defaultIssuer, "issuer URL; endpoints come from its discovery document")
	fs.StringVar(&cfg.workload, "workload", "cc", "one of "+strings.Join(workloads, ", "))
	fs.IntVar(&cfg.concurrency, "c", 16, "closed-loop workers")
	fs.DurationVar(&cfg.duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before -d")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "timeout of one request (or one whole code flow)")
	fs.Float64Var(&cfg.rate, "rate", 0, "pace the workers to this many requests/s in total (0: as fast as the server answers)")
	fs.DurationVar(&cfg.familyAge, "refresh-family-age", 0, "refresh: start a new family when the current one is this old (0: never)")
	fs.BoolVar(&cfg.netHTTP, "net-http", false, "send the API requests with net/http's client instead of loadgen's own HTTP/1.1 (about twice the load generator's CPU per request)")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "the server's process id: report its CPU time per request (Linux /proc)")
	fs.StringVar(&cfg.clientID, "client-id", defaultClientID, "confidential client (cc, introspect, verify)")
	fs.StringVar(&cfg.clientSecret, "client-secret", defaultClientSecret, "its secret (client_secret_basic)")
	fs.StringVar(&cfg.scope, "scope", "", "scope of the cc requests (empty: the client's default)")
	fs.StringVar(&cfg.audience, "audience", defaultAudience, "audience the verify workload checks")
	fs.StringVar(&cfg.publicClient, "public-client", defaultPublicClient, "public client of the code and refresh workloads")
	fs.StringVar(&cfg.redirectURI, "redirect-uri", defaultRedirectURI, "its registered redirect URI")
	fs.StringVar(&cfg.codeScope, "code-scope", defaultCodeScope, "scope of the code workload")
	fs.StringVar(&cfg.refreshScope, "refresh-scope", defaultRefreshScope, "scope of the refresh workload's families (offline_access for a refresh token; openid adds an ID token per rotation)")
	fs.StringVar(&cfg.username, "username", defaultUsername, "user who logs in")
	fs.StringVar(&cfg.password, "password", defaultPassword, "their password")
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "usage: loadgen [flags]\n       loadgen report [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.concurrency < 1 || cfg.duration <= 0 || cfg.warmup < 0 {
		return cfg, errors.New("-c must be at least 1, -d positive and -warmup not negative")
	}
	known := false
	for _, w := range workloads {
		known = known || w == cfg.workload
	}
	if !known {
		return cfg, fmt.Errorf("unknown workload %q (want one of %s)", cfg.workload, strings.Join(workloads, ", "))
	}
	return cfg, nil
}

// Result is one measurement: the JSON line loadgen prints.
type Result struct {
	Workload    string  `json:"workload"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration"`
	WarmupS     float64 `json:"warmup"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	// Latencies in milliseconds, over the requests counted.
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Errors int64   `json:"errors"`
	// ErrorSamples are the first distinct errors, to tell a failing run from a slow one.
	ErrorSamples []string `json:"errorSamples,omitempty"`
	// Issuer is the server measured; empty for the in-process workloads that need none.
	Issuer     string `json:"issuer,omitempty"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// Connections is how many TCP connections the workload opened (keep-alive reuse: ideally
	// the concurrency).
	Connections int64 `json:"connections,omitempty"`
	// ServerCPU is the CPU time (user and system, all threads) the server process used in the
	// measured window, in seconds, and ServerCPUPerRequest the same per request counted, in
	// microseconds: a figure that a busy shared machine disturbs far less than the rate.
	ServerCPU           float64 `json:"serverCPU,omitempty"`
	ServerCPUPerRequest float64 `json:"serverCPUPerRequest,omitempty"`
	// LoadgenCPUPerRequest is the same for this process: when it nears the server's, the load
	// generator's CPU, not the server, may be what limits the rate.
	LoadgenCPUPerRequest float64 `json:"loadgenCPUPerRequest,omitempty"`
	Time                 string  `json:"time"`
}

func measureWorkload(ctx context.Context, cfg config) (*Result, error) {
	env, err := newEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	newWorker, err := env.workload(ctx, cfg.workload)
	if err != nil {
		return nil, fmt.Errorf("set up %s: %w", cfg.workload, err)
	}
	var cpu *cpuWindow
	if cfg.serverPID > 0 {
		cpu = &cpuWindow{pid: cfg.serverPID}
	}
	self := &cpuWindow{pid: os.Getpid()}
	res, err := measure(ctx, cfg.concurrency, cfg.warmup, cfg.duration, cfg.rate, newWorker, cpu, self)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.workload, err)
	}
	if self.err == nil && res.Requests > 0 {
		res.LoadgenCPUPerRequest = math.Round(float64(self.used)/float64(res.Requests)/10) / 100
	}
	if cpu != nil {
		if cpu.err != nil {
			return nil, fmt.Errorf("server CPU time: %w", cpu.err)
		}
		res.ServerCPU = cpu.used.Seconds()
		if res.Requests > 0 {
			res.ServerCPUPerRequest = math.Round(float64(cpu.used)/float64(res.Requests)/10) / 100
		}
	}
	res.Workload = cfg.workload
	if env.http != nil {
		res.Issuer = cfg.issuer
		res.Connections = env.dials.Load()
	}
	res.GOMAXPROCS = runtime.GOMAXPROCS(0)
	res.Time = time.Now().UTC().Format(time.RFC3339)
	return res, nil
}
