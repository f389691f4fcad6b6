package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// errHelp is returned when -h was asked for; the usage has been printed.
var errHelp = errors.New("help requested")

// Modes of --mode.
const (
	modeAll        = "all"
	modeController = "controller"
	modeServer     = "server"
)

// Config is everything the flags set. DESIGN.md ("The binary") is the contract for the names.
type Config struct {
	Dev                     bool
	Manifests               string
	Listen                  string
	Issuer                  string
	RedisURL                string
	Namespace               string
	SigningKey              string
	UsersSecret             string
	WatchNamespaces         []string
	Mode                    string
	Kubeconfig              string
	LeaderElect             bool
	LeaderElectionNamespace string
	MetricsAddr             string
	ProbeAddr               string
	ClientSecretGracePeriod time.Duration
	TrustedProxies          []netip.Prefix
	RedisWaitReplicas       int
	RedisWaitTimeout        time.Duration

	zap zap.Options
}

// parseFlags turns the command line (and the few environment variables that stand in for flags
// whose values are secrets or come from the downward API) into a Config, and checks it.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var (
		cfg            Config
		watch, proxies string
	)
	fs := flag.NewFlagSet("latchkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&cfg.Dev, "dev", false, "no cluster: objects come from --manifests, state from memory (or --redis-url)")
	fs.StringVar(&cfg.Manifests, "manifests", "config/samples", "--dev: directory of YAML files (SigningKey, OAuthClient and Secret objects)")
	fs.StringVar(&cfg.Listen, "listen", ":8080", "token server address")
	fs.StringVar(&cfg.Issuer, "issuer", "", "issuer identifier, the external https URL of the token server (in --dev: http://<listen address>)")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "redis:// or rediss:// URL; Sentinel and Cluster forms too (see docs/configuration.md); default $LATCHKEY_REDIS_URL")
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace of the SigningKeys and the users Secret (default $POD_NAMESPACE; in --dev \"default\")")
	fs.StringVar(&cfg.SigningKey, "signing-key", "default", "SigningKey to sign with")
	fs.StringVar(&cfg.UsersSecret, "users-secret", "latchkey-users", "Secret (key users.yaml) holding the end users")
	fs.StringVar(&watch, "watch-namespaces", "", "comma-separated namespaces where OAuthClients are read (default: all)")
	fs.StringVar(&cfg.Mode, "mode", modeAll, "all, controller (reconcile only) or server (serve tokens only)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: in-cluster, $KUBECONFIG or ~/.kube/config)")
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", false, "elect a leader so only one replica reconciles (every replica serves tokens)")
	fs.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default: --namespace)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-bind-address", ":9090", "Prometheus metrics address (\"0\" disables)")
	fs.StringVar(&cfg.ProbeAddr, "health-probe-bind-address", ":8081", "manager health probe address (\"0\" disables)")
	fs.DurationVar(&cfg.ClientSecretGracePeriod, "client-secret-grace-period", 24*time.Hour, "how long a rotated client secret stays valid")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is trusted (default: none)")
	fs.IntVar(&cfg.RedisWaitReplicas, "redis-wait-replicas", 0, "after each code redemption, refresh rotation and revocation, WAIT for this many Redis replicas; fewer answer 503 (decision D5; 0 = off)")
	fs.DurationVar(&cfg.RedisWaitTimeout, "redis-wait-timeout", 100*time.Millisecond, "longest a write waits for --redis-wait-replicas before the request fails closed")
	cfg.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, errHelp
		}
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.RedisURL == "" {
		cfg.RedisURL = os.Getenv("LATCHKEY_REDIS_URL")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = os.Getenv("POD_NAMESPACE")
	}
	cfg.WatchNamespaces = splitList(watch)
	for _, p := range splitList(proxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return Config{}, fmt.Errorf("--trusted-proxies: %w", err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, prefix.Masked())
	}
	if err := cfg.complete(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// complete fills the mode-dependent defaults and rejects contradictions with a clear message.
func (c *Config) complete() error {
	switch c.Mode {
	case modeAll, modeController, modeServer:
	default:
		return fmt.Errorf("--mode must be all, controller or server, not %q", c.Mode)
	}
	if c.Dev {
		if c.Namespace == "" {
			c.Namespace = "default"
		}
		if c.Issuer == "" {
			c.Issuer = devIssuer(c.Listen)
		}
	} else {
		if c.Namespace == "" {
			return errors.New("--namespace is required outside a pod (POD_NAMESPACE is not set)")
		}
		if c.Issuer == "" && c.Mode != modeController {
			return errors.New("--issuer is required: the external URL clients use, e.g. https://auth.example.com")
		}
		if c.RedisURL == "" && c.Mode != modeController {
			return errors.New("--redis-url (or LATCHKEY_REDIS_URL) is required outside --dev")
		}
	}
	if c.Issuer != "" {
		if err := checkIssuer(c.Issuer, c.Dev); err != nil {
			return err
		}
	}
	if c.LeaderElectionNamespace == "" {
		c.LeaderElectionNamespace = c.Namespace
	}
	if c.ClientSecretGracePeriod < 0 {
		return errors.New("--client-secret-grace-period must not be negative")
	}
	if c.RedisWaitReplicas < 0 {
		return errors.New("--redis-wait-replicas must not be negative")
	}
	// WAIT with timeout 0 blocks until the replicas answer, however long: never allowed.
	if c.RedisWaitReplicas > 0 && c.RedisWaitTimeout <= 0 {
		return errors.New("--redis-wait-timeout must be positive when --redis-wait-replicas is set")
	}
	return nil
}

// checkIssuer enforces RFC 8414 §2: an https URL with no query or fragment. Plain http is
// accepted for loopback hosts and in --dev, where TLS is not set up.
func checkIssuer(issuer string, dev bool) error {
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("--issuer: %w", err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(issuer, "/") {
		return fmt.Errorf("--issuer %q must be an absolute URL without query, fragment, user info or trailing slash", issuer)
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip, _ := netip.ParseAddr(u.Hostname())
		if !dev && !ip.IsLoopback() && u.Hostname() != "localhost" {
			return fmt.Errorf("--issuer %q must use https (RFC 8414 §2); http is only for loopback and --dev", issuer)
		}
	default:
		return fmt.Errorf("--issuer %q must use https", issuer)
	}
	return nil
}

// devIssuer is http://<listen address>, with an empty or wildcard host shown as localhost.
func devIssuer(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// newLogger builds the structured logger (controller-runtime's zap, JSON unless --dev).
func newLogger(cfg Config, w io.Writer) logr.Logger {
	opts := cfg.zap
	opts.Development = cfg.Dev
	opts.DestWriter = w
	return zap.New(zap.UseFlagOptions(&opts))
}
