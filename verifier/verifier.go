package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
)

// Limits and defaults.
const (
	// MaxTokenSize is the longest token Verify parses. Latchkey's tokens are well under 2 KiB
	// even with RSA-3072 signatures; anything longer is refused before any decoding, so an 8 MB
	// header or a token of 100 000 dots costs one length check (CVE-2025-27144, CVE-2025-30204).
	MaxTokenSize = 8 << 10

	// DefaultLeeway is the clock skew allowed on exp, nbf and iat; MaxLeeway bounds WithLeeway.
	DefaultLeeway = 60 * time.Second
	MaxLeeway     = 5 * time.Minute

	// DefaultJWKSMinInterval is the default rate limit of JWKS fetches: the shortest time a key
	// set is trusted as fresh and the least time between two fetches for unknown kids. In
	// file mode it is how often the file is re-read.
	DefaultJWKSMinInterval = 30 * time.Second
	// DefaultJWKSMaxAge caps the server's Cache-Control max-age: a key removed from the JWKS
	// (rotated out or revoked) stops verifying at most this long after its removal.
	DefaultJWKSMaxAge = time.Hour

	// MaxIntrospectionCacheTTL bounds the positive introspection cache.
	MaxIntrospectionCacheTTL = 5 * time.Minute
)

// supportedAlgorithms are the algorithms Latchkey signs with and the default allow-list. none and
// HMAC are never accepted: with a public JWKS, an HMAC "key" is public too (RFC 8725 §2.1).
var supportedAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// Option configures New.
type Option func(*config)

type config struct {
	audience      string
	jwksFile      string
	client        *http.Client
	leeway        time.Duration
	algs          []string
	now           func() time.Time
	realm         string
	minRefresh    time.Duration
	maxRefresh    time.Duration
	introspection *introspectionConfig
}

type introspectionConfig struct {
	endpoint, clientID, secret string
	ttl                        time.Duration
}

// WithAudience sets the audience this resource server is: a token is accepted only if its "aud"
// contains aud exactly. It is required.
func WithAudience(aud string) Option { return func(c *config) { c.audience = aud } }

// WithJWKSFile takes the keys from a JWKS file instead of the issuer's jwks_uri, typically the
// "<signingkey>-jwks" ConfigMap (key "jwks.json") mounted into the pod. New then makes no
// network call for keys. The file is re-read every JWKS minimum interval (see WithJWKSRefresh)
// and when a token names an unknown kid (rate-limited the same way), so a ConfigMap update,
// which the kubelet applies by swapping the ..data symlink, is picked up. If a re-read fails
// the previous keys stay in use.
func WithJWKSFile(path string) Option { return func(c *config) { c.jwksFile = path } }

// WithHTTPClient sets the client for discovery, the JWKS and introspection. The default client
// has a 10 s timeout and does not follow redirects.
func WithHTTPClient(client *http.Client) Option { return func(c *config) { c.client = client } }

// WithLeeway sets the clock skew allowed on exp, nbf and iat: at least 0, at most MaxLeeway.
// The default is DefaultLeeway.
func WithLeeway(d time.Duration) Option { return func(c *config) { c.leeway = d } }

// WithAlgorithms narrows the accepted algorithms to a subset of RS256, PS256, ES256 and EdDSA
// (the default is all four). Any other name, including none and HS256, makes New fail.
func WithAlgorithms(algs ...string) Option {
	return func(c *config) { c.algs = append([]string{}, algs...) }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithRealm sets the realm of the WWW-Authenticate challenges the middleware sends
// (RFC 6750 §3). The default is the audience.
func WithRealm(realm string) Option { return func(c *config) { c.realm = realm } }

// WithJWKSRefresh bounds how the key set is refreshed. The server's Cache-Control max-age is
// clamped to [minInterval, maxAge] (DefaultJWKSMinInterval and DefaultJWKSMaxAge by default),
// and fetches for unknown kids happen at most once per minInterval; a response without max-age
// is fresh for 5 min (within the same bounds). minInterval must be at least 1 s and maxAge at
// most 24 h.
func WithJWKSRefresh(minInterval, maxAge time.Duration) Option {
	return func(c *config) { c.minRefresh, c.maxRefresh = minInterval, maxAge }
}

// WithIntrospection makes Verify also ask the issuer's introspection endpoint (RFC 7662) about
// every token that passes the local checks, so a revoked token is refused at once. The verifier
// authenticates with client_secret_basic. An empty endpoint means the introspection_endpoint
// from the issuer's metadata. Only positive answers are cached, for positiveCacheTTL (0 to
// 5 min, never beyond the token's exp); a negative answer is never cached, and an
// introspection failure rejects the token (ErrUnavailable).
func WithIntrospection(endpoint, clientID, secret string, positiveCacheTTL time.Duration) Option {
	return func(c *config) {
		c.introspection = &introspectionConfig{endpoint: endpoint, clientID: clientID, secret: secret, ttl: positiveCacheTTL}
	}
}

// Verifier validates Latchkey access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer        string
	audience      string
	realm         string
	leeway        time.Duration
	algs          []jose.SignatureAlgorithm
	now           func() time.Time
	keys          *keyCache
	introspection *introspector
}

// New returns a Verifier for tokens from issuer (compared exactly with "iss") meant for the
// audience set with WithAudience. Unless WithJWKSFile is given, it reads the issuer's metadata
// from <issuer>/.well-known/oauth-authorization-server, whose "issuer" must equal issuer
// exactly (RFC 8414 §3.3), and loads the JWKS from its jwks_uri. It fails if the metadata or
// the keys cannot be loaded, so a misconfigured workload fails at start, not on its first
// request.
func New(ctx context.Context, issuer string, opts ...Option) (*Verifier, error) {
	cfg := config{leeway: DefaultLeeway, minRefresh: DefaultJWKSMinInterval, maxRefresh: DefaultJWKSMaxAge}
	for _, o := range opts {
		o(&cfg)
	}
	if err := checkIssuer(issuer); err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	if cfg.audience == "" {
		return nil, errors.New("new verifier: an audience is required (WithAudience)")
	}
	if cfg.leeway < 0 || cfg.leeway > MaxLeeway {
		return nil, fmt.Errorf("new verifier: leeway %v outside [0, %v]", cfg.leeway, MaxLeeway)
	}
	if cfg.minRefresh < time.Second || cfg.maxRefresh > 24*time.Hour || cfg.minRefresh > cfg.maxRefresh {
		return nil, fmt.Errorf("new verifier: jwks refresh bounds [%v, %v] invalid", cfg.minRefresh, cfg.maxRefresh)
	}
	algs, err := allowedAlgorithms(cfg.algs)
	if err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.client == nil {
		cfg.client = &http.Client{
			Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if cfg.realm == "" {
		cfg.realm = cfg.audience
	}

	v := &Verifier{
		issuer:   issuer,
		audience: cfg.audience,
		realm:    cfg.realm,
		leeway:   cfg.leeway,
		algs:     algs,
		now:      cfg.now,
	}
	var src jwksSource
	var md *metadata
	if cfg.jwksFile != "" {
		src = &fileSource{path: cfg.jwksFile}
	} else {
		md, err = discover(ctx, cfg.client, issuer)
		if err != nil {
			return nil, fmt.Errorf("new verifier: %w", err)
		}
		src = &httpSource{client: cfg.client, url: md.JWKSURI}
	}
	v.keys = &keyCache{src: src, now: cfg.now, minInterval: cfg.minRefresh, maxAge: cfg.maxRefresh, algs: algs}
	if err := v.keys.load(ctx); err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	if ic := cfg.introspection; ic != nil {
		endpoint := ic.endpoint
		if endpoint == "" && md != nil {
			endpoint = md.IntrospectionEndpoint
		}
		if err := checkEndpoint(endpoint); err != nil {
			return nil, fmt.Errorf("new verifier: introspection endpoint: %w", err)
		}
		if ic.clientID == "" || ic.secret == "" {
			return nil, errors.New("new verifier: introspection needs a client id and secret")
		}
		if ic.ttl < 0 || ic.ttl > MaxIntrospectionCacheTTL {
			return nil, fmt.Errorf("new verifier: introspection cache ttl %v outside [0, %v]", ic.ttl, MaxIntrospectionCacheTTL)
		}
		v.introspection = newIntrospector(cfg.client, endpoint, ic.clientID, ic.secret, ic.ttl, cfg.now)
	}
	return v, nil
}

func allowedAlgorithms(names []string) ([]jose.SignatureAlgorithm, error) {
	if names == nil {
		return supportedAlgorithms, nil
	}
	if len(names) == 0 {
		return nil, errors.New("empty algorithm allow-list")
	}
	var out []jose.SignatureAlgorithm
	for _, n := range names {
		a := jose.SignatureAlgorithm(n)
		if !containsAlg(supportedAlgorithms, a) {
			return nil, fmt.Errorf("algorithm %q is not supported (allowed: RS256, PS256, ES256, EdDSA)", n)
		}
		if !containsAlg(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Issuer is the issuer the verifier accepts.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience is the audience the verifier requires.
func (v *Verifier) Audience() string { return v.audience }

// emptyRoots makes Header.Certificates report an x5c header without trusting or fetching
// anything: with a non-nil, empty pool it cannot succeed, and never asks the platform verifier.
var emptyRoots = x509.NewCertPool()

// Verify validates an access token per RFC 9068 §4 and RFC 8725 and returns its claims. Checks,
// in order: size and shape (compact serialization only), header (typ, alg allow-list, no
// jku/x5u/jwk/x5c/crit/b64, a kid), the key named by kid and its algorithm, the signature, and
// only then the claims (iss, exp, nbf, iat, aud, required claims), so a token that is both
// expired and forged is reported as a signature failure. With WithIntrospection the issuer is
// asked last. Every error is a rejection and wraps one of the Err values of this package.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	c, err := v.verifyLocal(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	if v.introspection != nil {
		if err := v.introspection.check(ctx, token, c.ExpiresAt()); err != nil {
			return nil, fmt.Errorf("verify token: %w", err)
		}
	}
	return c, nil
}

func (v *Verifier) verifyLocal(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	if !compactShape(token) {
		return nil, fmt.Errorf("%w: not a compact JWS of three base64url parts", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return nil, fmt.Errorf("%w: %q", ErrAlgorithm, algErr.Got)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrMalformed)
	}
	h := jws.Signatures[0].Header
	if err := checkHeader(&h); err != nil {
		return nil, err
	}

	// The header was vetted before the key lookup, so a forged header never causes a fetch.
	key, err := v.keys.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	if !key.allows(h.Algorithm) {
		return nil, fmt.Errorf("%w: %q does not match the key", ErrAlgorithm, h.Algorithm)
	}
	payload, err := jws.Verify(key.public)
	if err != nil {
		return nil, ErrSignature
	}

	if len(payload) == 0 || payload[0] != '{' {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	c := &Claims{payload: payload}
	if err := json.Unmarshal(payload, &c.c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := v.checkClaims(&c.c); err != nil {
		return nil, err
	}
	return c, nil
}

// compactShape reports whether s is three base64url parts (RFC 7515 §7.1) with a non-empty
// header and payload, in one pass that stops at the first stray byte or third dot. It keeps
// whitespace out (Go's base64 decoder skips newlines) and requires canonical base64 (unused
// trailing bits zero, RFC 4648 §3.5), so each token has exactly one spelling.
func compactShape(s string) bool {
	dots, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if b64Value(s[i]) < 0 {
				return false
			}
			continue
		}
		// End of a part: s[start:i].
		if i == start && dots < 2 {
			return false // empty header or payload
		}
		if !canonicalTail(s[start:i]) {
			return false
		}
		if i < len(s) {
			if dots == 2 {
				return false
			}
			dots++
			start = i + 1
		}
	}
	return dots == 2
}

// b64Value is the 6-bit value of a base64url character, or -1.
func b64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// canonicalTail checks the length and the unused low bits of unpadded base64url.
func canonicalTail(part string) bool {
	switch len(part) % 4 {
	case 1:
		return false
	case 2:
		return b64Value(part[len(part)-1])&0x0f == 0
	case 3:
		return b64Value(part[len(part)-1])&0x03 == 0
	}
	return true
}

// checkHeader applies RFC 8725 §3.1, §3.11 and RFC 9068 §4 to the protected header.
func checkHeader(h *jose.Header) error {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return ErrType
	}
	// Keys come only from the configured JWKS; a header that names or carries a key is an
	// attack (CVE-2018-0114) or a misconfiguration, and is refused without being followed.
	if h.JSONWebKey != nil {
		return fmt.Errorf("%w: jwk", ErrHeader)
	}
	for _, name := range [...]jose.HeaderKey{"jku", "x5u", "crit", "b64"} {
		if _, ok := h.ExtraHeaders[name]; ok {
			return fmt.Errorf("%w: %s", ErrHeader, name)
		}
	}
	if _, err := h.Certificates(x509.VerifyOptions{Roots: emptyRoots}); !errors.Is(err, jose.ErrMissingX5cHeader) {
		return fmt.Errorf("%w: x5c", ErrHeader)
	}
	if h.KeyID == "" {
		return fmt.Errorf("%w: no kid", ErrKeyNotFound)
	}
	return nil
}

// checkClaims applies RFC 9068 §4 and RFC 7519 §4.1 to verified claims.
func (v *Verifier) checkClaims(c *tokenClaims) error {
	if c.Issuer != v.issuer {
		return ErrIssuer
	}
	now := v.now()
	if c.Expiry == nil {
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if !now.Before(c.Expiry.t.Add(v.leeway)) {
		return ErrExpired
	}
	if c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.t) {
		return fmt.Errorf("%w: nbf", ErrNotYetValid)
	}
	if c.IssuedAt == nil {
		return fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	if now.Add(v.leeway).Before(c.IssuedAt.t) {
		return fmt.Errorf("%w: iat", ErrNotYetValid)
	}
	if !c.Audience.contains(v.audience) {
		return ErrAudience
	}
	switch {
	case c.Subject == "":
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	case c.ClientID == "":
		return fmt.Errorf("%w: client_id", ErrMissingClaim)
	case c.ID == "":
		return fmt.Errorf("%w: jti", ErrMissingClaim)
	}
	return nil
}
