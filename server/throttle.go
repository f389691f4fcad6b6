package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/accesstoken"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
	"github.com/latchkey-dev/latchkey/server/ratelimit"
	"github.com/latchkey-dev/latchkey/server/store"
)

// Endpoint names of the client request counters (and of the metrics' endpoint label).
const (
	limitToken      = "token"
	limitIntrospect = "introspect"
	limitRevoke     = "revoke"
)

// authenticateClient authenticates the client of an introspection or revocation request and
// applies the client throttles (package ratelimit). It writes the response and returns false
// when the request ends here:
//
//   - invalid_client for a registered confidential client_id counts a failure; the failure
//     past the limit is answered 429 instead of 401;
//   - an authenticated client is refused with 429 while its client_id is locked by failures
//     or it is over its spec.rateLimit at this endpoint;
//   - a store failure of the limiter is 503 temporarily_unavailable.
//
// The secret is checked before the failure counter is read, so that both happen in the one
// store call of the request; the answer (200 or 429) still does not depend on the secret
// while the client_id is locked, since nothing else is answered before admission.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, form httpx.Form, p clients.Policy, endpoint string) (*clients.Client, bool) {
	c, ok := s.identifyClient(w, r, form, p)
	if !ok {
		return nil, false
	}
	if !s.admitted(w, r, s.admit(r.Context(), c, endpoint, false)) {
		return nil, false
	}
	return c, true
}

// identifyClient authenticates the client and counts a failed authentication (the first half
// of authenticateClient). The caller must pass the client through admit and admitted before
// it answers anything else.
func (s *Server) identifyClient(w http.ResponseWriter, r *http.Request, form httpx.Form, p clients.Policy) (*clients.Client, bool) {
	ctx := r.Context()
	c, err := s.auth.Authenticate(ctx, r, form, p)
	if err == nil {
		return c, true
	}
	if oautherr.From(err).Code == oautherr.CodeInvalidClient {
		if id := clients.ClaimedID(r, form); id != "" && s.guessable(r, id) {
			infoFrom(ctx).clientID = id
			d, lerr := s.limiter.Fail(ctx, id, s.now())
			if lerr != nil {
				s.writeError(w, r, limiterUnavailable(lerr))
				return nil, false
			}
			if d.Refused() {
				s.writeThrottled(w, r, d, err)
				return nil, false
			}
		}
	}
	s.writeError(w, r, err)
	return nil, false
}

// admission is the limiter's answer for one authenticated request: decided at once, or
// deferred until the request records its token (client_credentials), so that the count and
// the record share one round trip (store.RecordAndHitter).
type admission struct {
	plan     ratelimit.Plan
	now      time.Time
	clientID string
	decided  bool
	d        ratelimit.Decision
	err      error
	// answered: admitted has written the refusal; later calls only report it.
	answered bool
}

// admit prepares the admission of c at endpoint and, unless deferred, decides it now.
func (s *Server) admit(ctx context.Context, c *clients.Client, endpoint string, deferred bool) *admission {
	lim := ratelimit.Limit{Requests: c.RateLimitRequests(), Window: c.RateLimitWindow()}
	a := &admission{
		plan:     s.limiter.Plan(c.ID, endpoint, lim, c.Method != latchkeyv1.AuthMethodNone),
		now:      s.now(),
		clientID: c.ID,
	}
	if !deferred {
		s.decide(ctx, a)
	}
	return a
}

// decide asks the store, unless a is decided or has nothing to count.
func (s *Server) decide(ctx context.Context, a *admission) {
	if a.decided {
		return
	}
	a.decided = true
	if len(a.plan.Hits) == 0 {
		return
	}
	counts, err := s.store.HitGroup(ctx, a.plan.Group, a.plan.Hits, a.now)
	a.resolve(counts, err)
}

// resolve records the store's answer.
func (a *admission) resolve(counts []store.LimitCount, err error) {
	a.decided = true
	if err != nil {
		a.err = fmt.Errorf("rate limit: %w", err)
		return
	}
	a.d = a.plan.Decide(counts, a.now)
}

// recordAdmitted records tok and decides a deferred admission in the same round trip when the
// store can (store.RecordAndHitter), else one after the other. The caller still checks
// admitted before sending the token: a token recorded for a refused request is never sent.
func (s *Server) recordAdmitted(ctx context.Context, a *admission, tok *accesstoken.Token) error {
	rh, ok := s.store.(store.RecordAndHitter)
	if a == nil || a.decided || len(a.plan.Hits) == 0 || !ok {
		return s.recordAccessToken(ctx, tok)
	}
	counts, hitErr, recErr := rh.RecordAccessTokenAndHit(ctx, tok.Record, a.plan.Group, a.plan.Hits, a.now)
	a.resolve(counts, hitErr)
	if recErr != nil {
		return fmt.Errorf("record access token: %w", recErr)
	}
	return nil
}

// admitted decides a if it is still deferred and reports whether the request may go on. A
// refusal (429) or a limiter outage (503) is written once; later calls return false without
// writing.
func (s *Server) admitted(w http.ResponseWriter, r *http.Request, a *admission) bool {
	s.decide(r.Context(), a)
	if a.err == nil && !a.d.Refused() {
		return true
	}
	if a.answered {
		return false
	}
	a.answered = true
	if a.err != nil {
		s.writeError(w, r, limiterUnavailable(a.err))
		return false
	}
	infoFrom(r.Context()).clientID = a.clientID
	s.writeThrottled(w, r, a.d, nil)
	return false
}

// guessable reports whether id is a registered confidential client, the only kind with a
// credential to guess. Failures for unknown or public client_ids are not counted: there is
// nothing to protect, and counting them would let anyone lock a public client out or fill the
// store with counters for made-up names.
func (s *Server) guessable(r *http.Request, id string) bool {
	c, err := s.registry.Lookup(r.Context(), id)
	if err != nil || c.Spec.Type != latchkeyv1.ClientTypeConfidential {
		return false
	}
	// A secret client whose Secret this replica does not hold (just created and not yet in
	// its cache, or deleted) fails for a reason of the server's own, not a guess: counting it
	// would lock the client out while its Secret propagates (test/e2e TestAPIServerOutage).
	if c.EffectiveAuthMethod() != latchkeyv1.AuthMethodPrivateKeyJWT {
		if _, err := s.registry.Credentials(r.Context(), c); err != nil {
			return false
		}
	}
	return true
}

// writeThrottled writes the 429 of a refused request and records it for the log and metrics
// (outcome slow_down; the reason and any authentication failure are the logged cause).
func (s *Server) writeThrottled(w http.ResponseWriter, r *http.Request, d ratelimit.Decision, authErr error) {
	info := infoFrom(r.Context())
	info.outcome = ratelimit.ErrorCode
	info.cause = errors.New(string(d.Reason))
	if authErr != nil {
		info.cause = fmt.Errorf("%s: %w", d.Reason, authErr)
	}
	ratelimit.Write(w, d)
}

// limiterUnavailable is the 503 of a limiter that cannot reach the store: the request is
// refused rather than served unthrottled.
func limiterUnavailable(err error) *oautherr.Error {
	return oautherr.Unavailable("the service is temporarily unavailable, retry later", err)
}

// tokenOfCaller is the common start of /introspect and /revoke: it reads the form,
// authenticates and admits the calling client at endpoint, answers CORS for it, and returns the
// token parameter, which both endpoints require (RFC 7662 §2.1, RFC 7009 §2.1). It writes the
// response and returns false when the request ends here.
func (s *Server) tokenOfCaller(w http.ResponseWriter, r *http.Request, p clients.Policy, endpoint string) (*clients.Client, string, bool) {
	form, err := httpx.ReadForm(w, r)
	if err != nil {
		s.writeError(w, r, formError(err))
		return nil, "", false
	}
	caller, ok := s.authenticateClient(w, r, form, p, endpoint)
	if !ok {
		return nil, "", false
	}
	infoFrom(r.Context()).clientID = caller.ID
	s.corsForClient(w, r, caller)
	token := form.Get(paramToken)
	if token == "" {
		s.writeError(w, r, oautherr.InvalidRequest("token is required"))
		return nil, "", false
	}
	return caller, token, true
}
