package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/json"
)

const (
	// maxIntrospectionResponse bounds the introspection response body.
	maxIntrospectionResponse = 64 << 10
	// introspectionTimeout bounds one introspection call on top of the caller's context.
	introspectionTimeout = 5 * time.Second
	// maxIntrospectionEntries bounds the positive cache; when full, expired entries are purged
	// and, if that is not enough, new answers are simply not cached.
	maxIntrospectionEntries = 10000
)

// introspector asks the issuer whether a token is active (RFC 7662). It caches positive answers
// only, keyed by the SHA-256 of the token (the token itself is never stored). A negative cache
// would make little sense (a revoked token stays revoked, but an unknown one may be valid on the
// next replica) and a stale negative is a denial of service, so every non-cached token is asked.
type introspector struct {
	client   *http.Client
	endpoint string
	auth     string
	ttl      time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]time.Time // token hash -> end of its cached "active"
}

func newIntrospector(client *http.Client, endpoint, clientID, secret string, ttl time.Duration, now func() time.Time) *introspector {
	// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
	cred := url.QueryEscape(clientID) + ":" + url.QueryEscape(secret)
	return &introspector{
		client:   client,
		endpoint: endpoint,
		auth:     "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)),
		ttl:      ttl,
		now:      now,
		cache:    map[[sha256.Size]byte]time.Time{},
	}
}

// check returns nil if the token is active, ErrInactive if the server says it is not, and
// ErrUnavailable if the server could not be asked or answered nonsense (fail closed).
func (in *introspector) check(ctx context.Context, token string, exp time.Time) error {
	sum := sha256.Sum256([]byte(token))
	now := in.now()
	if in.ttl > 0 {
		in.mu.Lock()
		until, ok := in.cache[sum]
		in.mu.Unlock()
		if ok && now.Before(until) {
			return nil
		}
	}
	active, err := in.ask(ctx, token)
	if err != nil {
		return fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	if !active {
		in.mu.Lock()
		delete(in.cache, sum)
		in.mu.Unlock()
		return ErrInactive
	}
	if in.ttl > 0 {
		until := now.Add(in.ttl)
		if exp.Before(until) {
			until = exp
		}
		in.store(sum, until, now)
	}
	return nil
}

func (in *introspector) store(sum [sha256.Size]byte, until, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.cache) >= maxIntrospectionEntries {
		for k, t := range in.cache {
			if !now.Before(t) {
				delete(in.cache, k)
			}
		}
		if len(in.cache) >= maxIntrospectionEntries {
			return
		}
	}
	in.cache[sum] = until
}

func (in *introspector) ask(ctx context.Context, token string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, introspectionTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", in.auth)
	resp, err := in.client.Do(req)
	if err != nil {
		return false, err
	}
	// The body is read (up to the limit) before this runs; closing it cannot fail the call.
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponse+1))
	if err != nil {
		return false, err
	}
	if len(body) > maxIntrospectionResponse {
		return false, fmt.Errorf("response larger than %d bytes", maxIntrospectionResponse)
	}
	// "active" must be the JSON boolean; a missing or mistyped one is an error, not a yes.
	var r struct {
		Active *bool `json:"active"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return false, fmt.Errorf("parse response: %w", err)
	}
	if r.Active == nil {
		return false, fmt.Errorf("response has no active member")
	}
	return *r.Active, nil
}
