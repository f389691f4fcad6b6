package clients

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// Defaults of a KeyFetcher.
const (
	DefaultFetchTimeout = 5 * time.Second
	DefaultMaxJWKSBytes = 256 << 10
	DefaultMaxRedirects = 3
	// DefaultKeyTTL is how long a fetched client JWKS is used before it is fetched again.
	DefaultKeyTTL = 10 * time.Minute
	// DefaultMinRefetch is the least time between two fetches of one jwksURI, whatever kids
	// assertions name: a flood of made-up kids costs at most one fetch per interval
	// (RFC 8725 §3.10, SECURITY-CASES 52).
	DefaultMinRefetch = 15 * time.Second

	maxCachedURIs = 1024
	maxKeysPerSet = 64
)

// ErrAddressNotAllowed: the jwksURI (or a redirect) resolved to an address the fetcher refuses.
var ErrAddressNotAllowed = errors.New("address not allowed")

// FetchOptions configure a KeyFetcher. Zero values take the defaults.
type FetchOptions struct {
	Timeout      time.Duration
	MaxBytes     int64
	MaxRedirects int
	TTL          time.Duration
	MinRefetch   time.Duration
	// AllowAddr decides, at dial time, whether an address may be connected to; nil is
	// PublicAddr. Tests that serve a JWKS on loopback widen it; nothing else should.
	AllowAddr func(netip.Addr) bool
	// TLSConfig is used for the https connections; nil uses the system roots.
	TLSConfig *tls.Config
	// Clock times the cache.
	Clock clock.PassiveClock
}

// KeyFetcher fetches and caches the JWKS of private_key_jwt clients (spec.jwksURI). It is
// built to be pointed at by untrusted tenants (SECURITY-CASES 52):
//
//   - https only, also after a redirect; at most MaxRedirects redirects;
//   - every connection, including each redirect and whatever DNS answers at dial time (DNS
//     rebinding), is checked against AllowAddr in the dialer's Control function, after
//     resolution, so private, loopback, link-local (169.254.169.254) and cluster addresses
//     are unreachable; no proxy from the environment is used, since a proxy would dial for us;
//   - a Timeout on the whole exchange, and at most MaxBytes of body;
//   - keys are cached for TTL, and one URI is fetched at most once per MinRefetch even when
//     assertions name unknown kids; concurrent fetches of one URI are merged.
type KeyFetcher struct {
	o      FetchOptions
	client *http.Client
	group  singleflight.Group

	mu    sync.Mutex
	cache map[string]*keyEntry
}

type keyEntry struct {
	keys        []jose.JSONWebKey
	fetchedAt   time.Time
	lastAttempt time.Time
}

// NewKeyFetcher returns a KeyFetcher.
func NewKeyFetcher(o FetchOptions) *KeyFetcher {
	if o.Timeout <= 0 {
		o.Timeout = DefaultFetchTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxJWKSBytes
	}
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.TTL <= 0 {
		o.TTL = DefaultKeyTTL
	}
	if o.MinRefetch <= 0 {
		o.MinRefetch = DefaultMinRefetch
	}
	if o.AllowAddr == nil {
		o.AllowAddr = PublicAddr
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	dialer := &net.Dialer{Timeout: o.Timeout, Control: dialControl(o.AllowAddr)}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       o.TLSConfig,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	maxRedirects := o.MaxRedirects
	return &KeyFetcher{
		o: o,
		client: &http.Client{
			Transport: transport,
			Timeout:   o.Timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) > maxRedirects {
					return fmt.Errorf("more than %d redirects", maxRedirects)
				}
				if req.URL.Scheme != "https" {
					return errors.New("redirect to a non-https URL")
				}
				return nil
			},
		},
		cache: map[string]*keyEntry{},
	}
}

// dialControl refuses connections to addresses allow rejects. It runs after name resolution,
// for every address the dialer tries.
func dialControl(allow func(netip.Addr) bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrAddressNotAllowed, err)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !allow(a.Unmap()) {
			return fmt.Errorf("%w: %s", ErrAddressNotAllowed, host)
		}
		return nil
	}
}

// blockedPrefixes are the ranges PublicAddr refuses besides what netip classifies: shared
// address space, benchmarking, documentation, reserved, the IPv4/IPv6 translation prefixes
// (which can embed a private IPv4 address) and 6to4/Teredo.
var blockedPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
		"2002::/16",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// PublicAddr reports whether a is a public unicast address: not loopback, private (RFC 1918,
// fc00::/7), link-local (169.254/16, fe80::/10, cloud metadata), multicast, unspecified, or
// one of blockedPrefixes.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Keys returns the keys of the JWKS at uri that may have signed an assertion with kid: the key
// with that kid, or every key when kid is "". An unknown kid triggers a refetch, at most once
// per MinRefetch; a fetch failure keeps the keys fetched before.
func (f *KeyFetcher) Keys(ctx context.Context, uri, kid string) ([]jose.JSONWebKey, error) {
	now := f.o.Clock.Now()
	f.mu.Lock()
	e := f.cache[uri]
	var have []jose.JSONWebKey
	fresh := false
	mayFetch := true
	if e != nil {
		have = e.keys
		fresh = e.keys != nil && now.Sub(e.fetchedAt) < f.o.TTL
		mayFetch = now.Sub(e.lastAttempt) >= f.o.MinRefetch
	}
	f.mu.Unlock()

	if fresh {
		if match := selectKeys(have, kid); len(match) > 0 || kid == "" {
			return match, nil
		}
	}
	if !mayFetch {
		if match := selectKeys(have, kid); len(match) > 0 {
			return match, nil
		}
		return nil, errors.New("client jwks: no matching key, and the jwks was fetched too recently to fetch again")
	}
	v, err, _ := f.group.Do(uri, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.o.Timeout)
		defer cancel()
		keys, err := f.fetch(fctx, uri)
		f.mu.Lock()
		defer f.mu.Unlock()
		e := f.cache[uri]
		if e == nil {
			if len(f.cache) >= maxCachedURIs {
				for k := range f.cache { // evict one arbitrary entry: the cache only saves fetches
					delete(f.cache, k)
					break
				}
			}
			e = &keyEntry{}
			f.cache[uri] = e
		}
		e.lastAttempt = f.o.Clock.Now()
		if err != nil {
			return e.keys, err
		}
		e.keys, e.fetchedAt = keys, e.lastAttempt
		return keys, nil
	})
	keys, _ := v.([]jose.JSONWebKey)
	if match := selectKeys(keys, kid); len(match) > 0 {
		return match, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, errors.New("client jwks: no key with this kid")
}

func selectKeys(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	for _, k := range keys {
		if k.KeyID == kid {
			return []jose.JSONWebKey{k}
		}
	}
	return nil
}

// fetch GETs uri and parses it as a JWKS of public signature keys.
func (f *KeyFetcher) fetch(ctx context.Context, uri string) ([]jose.JSONWebKey, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, errors.New("client jwks: jwksURI must be an https URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("client jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client jwks: fetch: %w", err)
	}
	// The body is read (up to the limit) before this runs; closing it cannot fail the fetch.
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client jwks: fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.o.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("client jwks: read: %w", err)
	}
	if int64(len(body)) > f.o.MaxBytes {
		return nil, fmt.Errorf("client jwks: larger than %d bytes", f.o.MaxBytes)
	}
	keys, err := keymaterial.ParseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("client jwks: %w", err)
	}
	if len(keys) > maxKeysPerSet {
		keys = keys[:maxKeysPerSet]
	}
	return keys, nil
}
