// Package ratelimit throttles OAuth clients at the token, introspection and revocation
// endpoints, with counters kept in the store so every replica shares them.
//
// Two limits apply, both per client_id, both in fixed windows (store.Limiter.HitGroup):
//
//   - Requests: each endpoint counts an authenticated client's requests against the client's
//     spec.rateLimit (default 6000 per minute). A client over it gets 429 until its window ends.
//   - Failed authentication: every wrong secret or bad assertion for a confidential client_id
//     is counted (AuthFailures, default 100 per 5 minutes). Past the limit every request naming
//     that client_id gets 429, the right secret included, so the secret cannot be guessed by
//     trying; other clients are not affected (SECURITY-CASES 48, OAuth 2.1 §7.7). The counter
//     is an atomic INCRBY, so concurrent failures all count.
//
// An authenticated request reads the failure counter and adds to its request counter in one
// store call (one Redis script, one round trip); a failed one adds to its failure counter in
// one. At the token endpoint the client_credentials grant sends that script in the pipeline
// that records its token (Plan, store.RecordAndHitter), so it costs no extra round trip; the
// code and refresh grants change state and are admitted before they do. When the store cannot be reached the limiter returns an error and the request is
// answered 503 temporarily_unavailable like any store outage: it neither fails open (which
// would lift the brute-force limit whenever Redis is down) nor answers 500.
package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
)

// Defaults of the failed-authentication limit.
const (
	DefaultAuthFailures      = 100
	DefaultAuthFailureWindow = 5 * time.Minute
)

// Counter names inside a client's group. The endpoint names are the request counters.
const (
	counterAuthFailures = "authfail"
	// groupPrefix keeps client groups apart from any other user of HitGroup.
	groupPrefix = "client:"
)

// Limit is a number of events allowed per fixed window. Requests 0 means no limit.
type Limit struct {
	Requests int64
	Window   time.Duration
}

// off reports whether the limit never refuses.
func (l Limit) off() bool { return l.Requests <= 0 || l.Window <= 0 }

// Reason says which limit refused a request (logged, and documented in docs/observability.md).
type Reason string

// The reasons of a refusal.
const (
	ReasonRequests     Reason = "client_rate_limit"
	ReasonAuthFailures Reason = "client_auth_failures"
)

// Decision is the limiter's answer. The zero Decision admits the request.
type Decision struct {
	// RetryAfter is how long until the request may be repeated; 0 admits it.
	RetryAfter time.Duration
	// Reason is the limit that refused it.
	Reason Reason
}

// Refused reports whether the request must be answered 429.
func (d Decision) Refused() bool { return d.RetryAfter > 0 }

// Limiter applies both limits. Its zero AuthFailures takes the defaults.
type Limiter struct {
	// Store keeps the counters.
	Store store.Limiter
	// AuthFailures is the failed-authentication limit per client_id.
	AuthFailures Limit
}

func (l *Limiter) failureLimit() Limit {
	if l.AuthFailures.Requests <= 0 || l.AuthFailures.Window <= 0 {
		return Limit{Requests: DefaultAuthFailures, Window: DefaultAuthFailureWindow}
	}
	return l.AuthFailures
}

// Admit counts a request of an authenticated client at endpoint against lim and, when
// checkFailures is set (a client with a secret or key to guess), checks that the client_id is
// not locked by failed authentications. One store call at most; none when nothing applies.
func (l *Limiter) Admit(ctx context.Context, clientID, endpoint string, lim Limit, checkFailures bool, now time.Time) (Decision, error) {
	p := l.Plan(clientID, endpoint, lim, checkFailures)
	if len(p.Hits) == 0 {
		return Decision{}, nil
	}
	counts, err := l.Store.HitGroup(ctx, p.Group, p.Hits, now)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	return p.Decide(counts, now), nil
}

// Plan is Admit's store call, for a caller that sends it together with another
// (store.RecordAndHitter) and then calls Decide with the counts.
type Plan struct {
	// Group and Hits are HitGroup's arguments. No hits: nothing to count, admit.
	Group string
	Hits  []store.LimitHit

	lim           Limit
	failures      Limit
	checkFailures bool
}

// Plan returns the counters Admit would count.
func (l *Limiter) Plan(clientID, endpoint string, lim Limit, checkFailures bool) Plan {
	p := Plan{Group: groupPrefix + clientID, lim: lim, failures: l.failureLimit(), checkFailures: checkFailures}
	if checkFailures {
		p.Hits = append(p.Hits, store.LimitHit{Name: counterAuthFailures, N: 0, Window: p.failures.Window})
	}
	if !lim.off() {
		p.Hits = append(p.Hits, store.LimitHit{Name: endpoint, N: 1, Window: lim.Window})
	}
	return p
}

// Decide judges the counts HitGroup returned for p.Hits.
func (p Plan) Decide(counts []store.LimitCount, now time.Time) Decision {
	var d Decision
	i := 0
	if p.checkFailures {
		if c := counts[0]; c.Count >= p.failures.Requests {
			d = refuse(d, ReasonAuthFailures, c.ResetAt, now)
		}
		i++
	}
	if !p.lim.off() {
		if c := counts[i]; c.Count > p.lim.Requests {
			d = refuse(d, ReasonRequests, c.ResetAt, now)
		}
	}
	return d
}

// Fail counts a failed authentication for clientID. It refuses the request when the failure
// is past the limit, so the attempt that crosses it already gets 429 instead of 401.
func (l *Limiter) Fail(ctx context.Context, clientID string, now time.Time) (Decision, error) {
	lim := l.failureLimit()
	counts, err := l.Store.HitGroup(ctx, groupPrefix+clientID,
		[]store.LimitHit{{Name: counterAuthFailures, N: 1, Window: lim.Window}}, now)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: count failed authentication: %w", err)
	}
	if c := counts[0]; c.Count > lim.Requests {
		return refuse(Decision{}, ReasonAuthFailures, c.ResetAt, now), nil
	}
	return Decision{}, nil
}

// refuse keeps the longer wait of d and a refusal until resetAt.
func refuse(d Decision, reason Reason, resetAt, now time.Time) Decision {
	wait := max(resetAt.Sub(now), time.Second)
	if wait > d.RetryAfter {
		return Decision{RetryAfter: wait, Reason: reason}
	}
	return d
}

// ErrorCode is the OAuth error code of a refused request. RFC 6749 registers no code for rate
// limiting at the token endpoint; slow_down is the token-endpoint code the OAuth Extensions
// Error Registry does hold for "the client is making requests too quickly" (RFC 8628 §3.5),
// so a client library that knows one throttling code knows this one. The status is 429 Too
// Many Requests with Retry-After (RFC 6585 §4), which generic HTTP clients honour.
const ErrorCode = "slow_down"

// Write writes the 429 response: Retry-After in whole seconds, rounded up, and a JSON body in
// the RFC 6749 §5.2 shape. Like every token-endpoint response it must not be cached
// (Cache-Control: no-store, RFC 6749 §5.1).
func Write(w http.ResponseWriter, d Decision) {
	secs := int64((d.RetryAfter + time.Second - 1) / time.Second)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = fmt.Fprintf(w, "{\"error\":%q,\"error_description\":\"too many requests, retry after %d seconds\"}\n", ErrorCode, secs)
}
