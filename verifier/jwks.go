package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
	"golang.org/x/sync/singleflight"
)

const (
	// minRSABits is the smallest RSA modulus accepted in a JWKS (RFC 7518 §3.3, FAPI 2.0).
	minRSABits = 2048
	// maxJWKSSize bounds a JWKS document read from the network or a file.
	maxJWKSSize = 1 << 20
	// fetchTimeout bounds one JWKS fetch. The fetch does not follow the caller's cancellation,
	// because concurrent callers share it, but it does not hang forever either.
	fetchTimeout = 10 * time.Second
	// jwksDefaultFreshness is used when the JWKS response has no Cache-Control max-age.
	jwksDefaultFreshness = 5 * time.Minute
)

// verificationKey is one usable key of the JWKS: its public key and the algorithms it may verify,
// which come from the JWK's "alg" (or, without one, its kty and curve), never from a token.
type verificationKey struct {
	public crypto.PublicKey
	algs   []jose.SignatureAlgorithm
}

func (k *verificationKey) allows(alg string) bool {
	for _, a := range k.algs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// keySet is an immutable snapshot of the JWKS. A refresh replaces the whole snapshot, so a key
// that left the JWKS stops verifying at once (a cache that only appends keeps revoked keys
// alive: CVE-2025-22149).
type keySet struct {
	keys    map[string]*verificationKey
	doc     []byte    // the document the keys came from, to skip re-parsing an unchanged one
	expires time.Time // when the snapshot is stale and the next Verify refreshes it
}

// jwksSource fetches a JWKS document. maxAge is the freshness the source asked for (HTTP
// Cache-Control), or -1 when it said nothing.
type jwksSource interface {
	fetch(ctx context.Context) (doc []byte, maxAge time.Duration, err error)
}

// keyCache holds the current key set and refreshes it: when it is stale, and when a token names a
// kid it does not hold. Refreshes are serialised by a singleflight group (one fetch in flight,
// shared by every waiter) and rate-limited to one per minInterval, so a flood of tokens with
// random kids costs at most one fetch per interval.
type keyCache struct {
	src         jwksSource
	now         func() time.Time
	minInterval time.Duration
	maxAge      time.Duration
	algs        []jose.SignatureAlgorithm

	current atomic.Pointer[keySet]
	group   singleflight.Group

	mu          sync.Mutex
	lastAttempt time.Time // start of the last fetch, for the rate limit
	lastErr     error     // outcome of the last fetch
}

// load fetches the first key set; New fails if it cannot.
func (c *keyCache) load(ctx context.Context) error {
	c.mu.Lock()
	c.lastAttempt = c.now()
	c.mu.Unlock()
	ks, err := c.fetch(ctx, nil)
	if err != nil {
		return err
	}
	c.current.Store(ks)
	return nil
}

// key returns the key named kid. It refreshes a stale set first, and refreshes once more (within
// the rate limit) when kid is unknown.
func (c *keyCache) key(ctx context.Context, kid string) (*verificationKey, error) {
	ks := c.current.Load()
	if !c.now().Before(ks.expires) {
		ks, _ = c.refresh(ctx) // on failure the previous keys stay in use
	}
	if k := ks.keys[kid]; k != nil {
		return k, nil
	}
	ks, err := c.refresh(ctx)
	if k := ks.keys[kid]; k != nil {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: refresh jwks: %w", ErrUnavailable, err)
	}
	return nil, ErrKeyNotFound
}

// refresh fetches the JWKS unless a fetch started less than minInterval ago, and returns the
// current key set with the outcome of the last fetch.
func (c *keyCache) refresh(ctx context.Context) (*keySet, error) {
	if ks, err, limited := c.rateLimited(); limited {
		return ks, err
	}
	ch := c.group.DoChan("jwks", func() (any, error) {
		// Check again inside the flight: a flight that just ended may have fetched already.
		if ks, err, limited := c.rateLimited(); limited {
			return ks, err
		}
		c.mu.Lock()
		c.lastAttempt = c.now()
		c.mu.Unlock()

		old := c.current.Load()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		ks, err := c.fetch(fctx, old)
		if err != nil {
			// Keep verifying with the keys we have, and retry after the rate-limit interval.
			ks = &keySet{keys: old.keys, doc: old.doc, expires: c.now().Add(c.minInterval)}
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		c.current.Store(ks)
		return ks, err
	})
	select {
	case res := <-ch:
		return res.Val.(*keySet), res.Err
	case <-ctx.Done():
		return c.current.Load(), ctx.Err()
	}
}

func (c *keyCache) rateLimited() (*keySet, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now().Sub(c.lastAttempt) < c.minInterval {
		return c.current.Load(), c.lastErr, true
	}
	return nil, nil, false
}

// fetch reads the JWKS and builds a new snapshot; an unchanged document keeps old's keys.
func (c *keyCache) fetch(ctx context.Context, old *keySet) (*keySet, error) {
	doc, maxAge, err := c.src.fetch(ctx)
	if err != nil {
		return nil, err
	}
	if maxAge < 0 {
		maxAge = jwksDefaultFreshness
	}
	maxAge = min(max(maxAge, c.minInterval), c.maxAge)
	ks := &keySet{doc: doc, expires: c.now().Add(maxAge)}
	if old != nil && bytes.Equal(old.doc, doc) {
		ks.keys = old.keys
		return ks, nil
	}
	ks.keys, err = parseJWKS(doc, c.algs)
	if err != nil {
		return nil, err
	}
	return ks, nil
}

// parseJWKS builds the kid -> key map from a JWKS document (RFC 7517 §5). Keys that cannot be
// used are skipped, as §5 asks: a key without kid, with private or symmetric members, for
// another use, of an unsupported type or curve, an RSA key under 2048 bits, or one whose alg is
// not allowed. A kid that appears twice is dropped entirely: which key it means is ambiguous.
func parseJWKS(doc []byte, allowed []jose.SignatureAlgorithm) (map[string]*verificationKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New("parse jwks: no keys member")
	}
	keys := make(map[string]*verificationKey, len(set.Keys))
	dup := map[string]bool{}
	for _, raw := range set.Keys {
		kid, k := parseJWK(raw, allowed)
		if k == nil {
			continue
		}
		if _, seen := keys[kid]; seen || dup[kid] {
			delete(keys, kid)
			dup[kid] = true
			continue
		}
		keys[kid] = k
	}
	return keys, nil
}

// privateMembers are the JWK members that only private or symmetric keys have (RFC 7518 §6).
type privateMembers struct {
	D   *json.RawMessage `json:"d"`
	P   *json.RawMessage `json:"p"`
	Q   *json.RawMessage `json:"q"`
	DP  *json.RawMessage `json:"dp"`
	DQ  *json.RawMessage `json:"dq"`
	QI  *json.RawMessage `json:"qi"`
	Oth *json.RawMessage `json:"oth"`
	K   *json.RawMessage `json:"k"`
}

func parseJWK(raw []byte, allowed []jose.SignatureAlgorithm) (string, *verificationKey) {
	var priv privateMembers
	if err := json.Unmarshal(raw, &priv); err != nil {
		return "", nil
	}
	if priv.D != nil || priv.P != nil || priv.Q != nil || priv.DP != nil || priv.DQ != nil ||
		priv.QI != nil || priv.Oth != nil || priv.K != nil {
		return "", nil
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return "", nil
	}
	if jwk.KeyID == "" || !jwk.IsPublic() || (jwk.Use != "" && jwk.Use != "sig") {
		return "", nil
	}
	var fits []jose.SignatureAlgorithm
	switch pub := jwk.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return "", nil
		}
		fits = []jose.SignatureAlgorithm{jose.RS256, jose.PS256}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return "", nil
		}
		fits = []jose.SignatureAlgorithm{jose.ES256}
	case ed25519.PublicKey:
		fits = []jose.SignatureAlgorithm{jose.EdDSA}
	default:
		return "", nil
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range fits {
		if (jwk.Algorithm == "" || jwk.Algorithm == string(a)) && containsAlg(allowed, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		return "", nil
	}
	return jwk.KeyID, &verificationKey{public: jwk.Key, algs: algs}
}

func containsAlg(list []jose.SignatureAlgorithm, a jose.SignatureAlgorithm) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// httpSource fetches the JWKS from jwks_uri.
type httpSource struct {
	client *http.Client
	url    string
}

func (s *httpSource) fetch(ctx context.Context) ([]byte, time.Duration, error) {
	body, header, err := getJSON(ctx, s.client, s.url, maxJWKSSize)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	return body, cacheMaxAge(header), nil
}

// fileSource reads the JWKS from a file, typically the "<signingkey>-jwks" ConfigMap mounted
// into the pod. The file is opened by path on every read, so the kubelet's atomic update (a new
// timestamped directory, then the ..data symlink swapped to it) is seen as soon as it happens.
type fileSource struct {
	path string
}

func (s *fileSource) fetch(context.Context) ([]byte, time.Duration, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, 0, fmt.Errorf("read jwks file: %w", err)
	}
	// A file opened read-only has nothing to flush: a close error cannot spoil what was read.
	defer func() { _ = f.Close() }()
	doc, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read jwks file: %w", err)
	}
	if len(doc) > maxJWKSSize {
		return nil, 0, fmt.Errorf("read jwks file: larger than %d bytes", maxJWKSSize)
	}
	return doc, 0, nil // re-read every minInterval
}

// getJSON GETs url and returns a 200 body of at most limit bytes.
func getJSON(ctx context.Context, client *http.Client, url string, limit int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	// The body is read (up to the limit) before this runs; closing it cannot fail the GET.
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("GET %s: body larger than %d bytes", url, limit)
	}
	return body, resp.Header, nil
}

// cacheMaxAge is the freshness lifetime a response asks for (RFC 9111 §4.2.1): max-age less Age,
// zero for no-store or no-cache, and -1 when the response does not say.
func cacheMaxAge(h http.Header) time.Duration {
	maxAge := time.Duration(-1)
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return 0 // an unparsable max-age is stale (RFC 9111 §4.2.1)
				}
				maxAge = time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second
			}
		}
	}
	if maxAge > 0 {
		if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
			maxAge = max(maxAge-time.Duration(min(age, int64(maxAge/time.Second)))*time.Second, 0)
		}
	}
	return maxAge
}
