package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client defaults that ParseURL sets unless the URL overrides them. They bound how long a call
// waits for an unhealthy Redis, so an outage is answered 503 within a request budget of about
// 1-2 s instead of go-redis's defaults (5 s per read, 3 retries, 5 dial attempts):
//
//   - Redis refuses connections (process down): a few milliseconds per call. After PoolSize
//     failed dials in a row go-redis fails dials at once and probes once a second in the
//     background, so the same client recovers within about a second of Redis coming back.
//   - Packets are dropped, or Redis accepts but does not answer (DEBUG SLEEP, CLIENT PAUSE, a
//     stalled failover): one attempt takes up to DefaultDialTimeout or DefaultReadTimeout, and
//     one retry (DefaultMaxRetries) doubles it: about 1.1 s in all.
//   - Every connection is busy: up to DefaultPoolTimeout waiting for one, then as above.
//
// ContextTimeoutEnabled is set, so a request's context deadline ends any of these earlier.
// Retried scripts are safe: a retry of a rotation or redemption that did commit is recognised
// by its new hash or jti and returns the same result (see store.Families.RotateRefresh).
const (
	DefaultDialTimeout     = 500 * time.Millisecond
	DefaultReadTimeout     = 500 * time.Millisecond
	DefaultWriteTimeout    = 500 * time.Millisecond
	DefaultPoolTimeout     = time.Second
	DefaultMaxRetries      = 1
	DefaultMaxRetryBackoff = 64 * time.Millisecond
)

// ParseURL parses --redis-url into options for redis.NewUniversalClient, which then picks a
// standalone, Sentinel or Cluster client:
//
//	redis://[[user]:password@]host[:6379][/db][?param=value&...]              standalone
//	rediss://...                                                              the same over TLS
//	redis://[[user]:password@]host1:6379,host2:6379[?param=value&...]         Cluster
//	redis://[[user]:password@]host:6379?cluster=true                          Cluster, one seed
//	redis-sentinel://[[user]:password@]host1:26379,host2:26379[/db]?master=mymaster
//	rediss-sentinel://...                                                     Sentinel over TLS
//
// Cluster: two or more addresses mean Cluster, as do cluster=true with one seed (a managed
// service's configuration endpoint); further seeds may also be given as repeated addr=host:port.
// A Cluster has only database 0.
//
// Sentinel: the addresses are the Sentinels' (default port 26379); master names the monitored
// master (required). The user and password of the URL authenticate to the Redis master and
// replicas; sentinel_username and sentinel_password, if the Sentinels need them.
//
// Parameters (durations as Go durations, "500ms", or whole seconds): dial_timeout,
// read_timeout, write_timeout, pool_timeout, pool_size, min_idle_conns, max_retries (-1: none),
// max_redirects (Cluster), client_name, protocol (2 or 3), db, cluster, master,
// sentinel_username, sentinel_password, addr. An unknown parameter is an error, so a typo
// cannot silently keep a default. Defaults: see DefaultDialTimeout.
//
// TLS (rediss, rediss-sentinel) verifies each server's certificate against the system roots
// for the host name it is dialled by, with TLS 1.2 at least.
func ParseURL(rawURL string) (*redis.UniversalOptions, error) {
	o, err := parseURL(rawURL)
	if err != nil {
		// The URL may carry a password: never echo it.
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	return o, nil
}

func parseURL(rawURL string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("missing scheme (redis://, rediss://, redis-sentinel:// or rediss-sentinel://)")
	}
	var sentinel, useTLS bool
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		useTLS = true
	case "redis-sentinel":
		sentinel = true
	case "rediss-sentinel":
		sentinel, useTLS = true, true
	default:
		return nil, fmt.Errorf("unsupported scheme %q", scheme)
	}

	// The host list may hold commas, which net/url does not accept in a host, so split the
	// authority off by hand and let net/url parse the user info, path and query.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hostlist = authority[:at+1], authority[at+1:]
	}
	u, err := url.Parse("redis://" + userinfo + "placeholder" + tail)
	if err != nil {
		return nil, errors.New("malformed user info, path or query")
	}
	if u.Fragment != "" {
		return nil, errors.New("unexpected fragment")
	}

	defPort := "6379"
	if sentinel {
		defPort = "26379"
	}
	var addrs []string
	if hostlist != "" {
		for _, h := range strings.Split(hostlist, ",") {
			a, err := withPort(h, defPort)
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, a)
		}
	}

	o := &redis.UniversalOptions{
		DialTimeout:           DefaultDialTimeout,
		DialerRetries:         1,
		ReadTimeout:           DefaultReadTimeout,
		WriteTimeout:          DefaultWriteTimeout,
		PoolTimeout:           DefaultPoolTimeout,
		MaxRetries:            DefaultMaxRetries,
		MaxRetryBackoff:       DefaultMaxRetryBackoff,
		ContextTimeoutEnabled: true,
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	switch p := strings.Trim(u.Path, "/"); {
	case p == "":
	case strings.Contains(p, "/"):
		return nil, fmt.Errorf("invalid path %q", u.Path)
	default:
		if o.DB, err = strconv.Atoi(p); err != nil || o.DB < 0 {
			return nil, fmt.Errorf("invalid database number %q", p)
		}
	}

	q := u.Query()
	var cluster bool
	var perr error
	for _, k := range sortedKeys(q) {
		v := q[k][len(q[k])-1]
		switch k {
		case "dial_timeout":
			o.DialTimeout, perr = duration(k, v)
		case "read_timeout":
			o.ReadTimeout, perr = duration(k, v)
		case "write_timeout":
			o.WriteTimeout, perr = duration(k, v)
		case "pool_timeout":
			o.PoolTimeout, perr = duration(k, v)
		case "pool_size":
			o.PoolSize, perr = integer(k, v)
		case "min_idle_conns":
			o.MinIdleConns, perr = integer(k, v)
		case "max_retries":
			o.MaxRetries, perr = integer(k, v)
		case "max_redirects":
			o.MaxRedirects, perr = integer(k, v)
		case "protocol":
			o.Protocol, perr = integer(k, v)
			if perr == nil && o.Protocol != 2 && o.Protocol != 3 {
				perr = fmt.Errorf("protocol must be 2 or 3, not %d", o.Protocol)
			}
		case "db":
			o.DB, perr = integer(k, v)
		case "client_name":
			o.ClientName = v
		case "cluster":
			cluster, perr = strconv.ParseBool(v)
			if perr != nil {
				perr = fmt.Errorf("invalid cluster %q", v)
			}
		case "master", "master_name":
			o.MasterName = v
		case "sentinel_username":
			o.SentinelUsername = v
		case "sentinel_password":
			o.SentinelPassword = v
		case "addr":
			for _, h := range q[k] {
				a, err := withPort(h, defPort)
				if err != nil {
					return nil, err
				}
				addrs = append(addrs, a)
			}
		default:
			perr = fmt.Errorf("unknown parameter %q", k)
		}
		if perr != nil {
			return nil, perr
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no host")
	}
	o.Addrs = addrs

	switch {
	case sentinel:
		if o.MasterName == "" {
			return nil, errors.New("sentinel url needs master=<name>")
		}
		if cluster {
			return nil, errors.New("cluster=true does not go with Sentinel")
		}
	case o.MasterName != "":
		return nil, errors.New("master is only for redis-sentinel:// urls")
	case o.SentinelUsername != "" || o.SentinelPassword != "":
		return nil, errors.New("sentinel credentials are only for redis-sentinel:// urls")
	case cluster || len(addrs) > 1:
		o.IsClusterMode = true
		if o.DB != 0 {
			return nil, errors.New("redis cluster has only database 0")
		}
	}
	if useTLS {
		// ServerName stays empty so crypto/tls checks each node against the name it is dialled
		// by: Cluster and Sentinel talk to several hosts.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// withPort validates host[:port] and adds the default port.
func withPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in host list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		switch {
		case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
			host, port = h[1:len(h)-1], defPort
		case !strings.Contains(h, ":"):
			host, port = h, defPort
		default:
			return "", fmt.Errorf("invalid address %q", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("invalid address %q", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("invalid port in %q", h)
	}
	return net.JoinHostPort(host, port), nil
}

// duration parses a Go duration or a number of seconds, as go-redis's own URLs do.
// A timeout cannot be switched off: an unbounded wait is what these defaults exist to prevent.
func duration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if n, aerr := strconv.Atoi(v); aerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid %s %q: want a positive duration", name, v)
	}
	return d, nil
}

func integer(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q", name, v)
	}
	return n, nil
}

func sortedKeys(q url.Values) []string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
