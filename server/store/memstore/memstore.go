// Package memstore keeps the token server's state in process memory. It is used only where the
// mode itself is in memory (--dev without --redis-url): one process, nothing survives a restart.
//
// It has exactly the semantics of the Redis store (package redisstore) and passes the same
// conformance suite (storetest): one mutex makes every operation atomic, records hold the same
// deadlines in milliseconds, and validity is judged against the caller's now only. Expired
// records are swept opportunistically (at most once a minute of the callers' clock, or every
// sweepEvery operations), ten minutes after their last deadline, so memory stays bounded by the
// live records.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
)

const (
	sweepEvery    = 1024
	sweepInterval = int64(time.Minute / time.Millisecond)
	// sweepGrace keeps a record this long past its last deadline, so a caller whose clock
	// steps back a little (NTP) gets the same answers as from Redis, where garbage goes by
	// TTL on the server's clock.
	sweepGrace = int64(10 * time.Minute / time.Millisecond)
)

// Store implements store.Store in memory. It is safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	codes     map[pair]*code     // (family, code hash)
	families  map[string]*family // family id
	ats       map[pair]*atRecord // (family, jti); family "" for client credentials
	asserts   map[pair]int64     // (client, jti) -> expiry
	sessions  map[string]*session
	requests  map[string]*request
	consents  map[pair]map[string]int64 // (subject, client) -> scope -> expiry
	limits    map[limitKey]*counter
	ops       int
	nextSweep int64
}

var (
	_ store.Store           = (*Store)(nil)
	_ store.RecordAndHitter = (*Store)(nil)
)

type pair struct{ a, b string }

type code struct {
	grant     store.Grant
	challenge string
	ex        int64
	redeemed  bool
	rj        string // jti of the redeeming call
	tb        int64  // end of the tombstone
}

type family struct {
	grant   store.Grant
	ca, ex  int64
	gc      int64 // end of the record: ex + retention.AccessTokenGrace
	g       int64
	revoked bool
	cur     string
	ci      int64
	prv     string
	pa, pi  int64
	used    map[string]int64
}

type atRecord struct {
	ex      int64
	revoked bool
	client  string
}

type session struct {
	s      store.Session
	ex, ie int64
}

type request struct {
	value []byte
	ex    int64
}

type limitKey struct {
	key   string
	start int64
	// name and grouped keep HitGroup's counters apart from Hit's, whatever the strings.
	name    string
	grouped bool
}

type counter struct{ n, end int64 }

// New returns an empty Store.
func New() *Store {
	return &Store{
		codes:    map[pair]*code{},
		families: map[string]*family{},
		ats:      map[pair]*atRecord{},
		asserts:  map[pair]int64{},
		sessions: map[string]*session{},
		requests: map[string]*request{},
		consents: map[pair]map[string]int64{},
		limits:   map[limitKey]*counter{},
	}
}

// Ping always succeeds: memory is always there.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(n int64) time.Time { return time.UnixMilli(n).UTC() }

// norm rounds a time to the millisecond, as the Redis store stores it; a zero time stays zero.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return fromMS(ms(t))
}

func normGrant(g store.Grant) store.Grant {
	g.AuthTime = norm(g.AuthTime)
	return g
}

// lock takes the mutex and sweeps when due.
func (s *Store) lock(now int64) {
	s.mu.Lock()
	s.ops++
	if s.ops >= sweepEvery || now >= s.nextSweep {
		s.sweep(now)
		s.ops = 0
		s.nextSweep = now + sweepInterval
	}
}

// sweep drops every record whose last deadline has passed. Each is then indistinguishable
// from a missing one for every operation, so dropping it changes no answer.
func (s *Store) sweep(now int64) {
	now -= sweepGrace
	for k, c := range s.codes {
		if (c.redeemed && c.tb <= now) || (!c.redeemed && c.ex <= now) {
			delete(s.codes, k)
		}
	}
	for k, f := range s.families {
		if f.gc <= now {
			delete(s.families, k)
		}
	}
	for k, r := range s.ats {
		if r.ex <= now {
			delete(s.ats, k)
		}
	}
	for k, e := range s.asserts {
		if e <= now {
			delete(s.asserts, k)
		}
	}
	for k, ss := range s.sessions {
		if min(ss.ex, ss.ie) <= now {
			delete(s.sessions, k)
		}
	}
	for k, r := range s.requests {
		if r.ex <= now {
			delete(s.requests, k)
		}
	}
	for k, m := range s.consents {
		pruneConsent(m, now)
		if len(m) == 0 {
			delete(s.consents, k)
		}
	}
	for k, c := range s.limits {
		if c.end <= now {
			delete(s.limits, k)
		}
	}
}

// liveFamily returns the family unless it is missing or past its record's end.
func (s *Store) liveFamily(id string, now int64) *family {
	f := s.families[id]
	if f == nil || f.gc <= now {
		return nil
	}
	return f
}

func (f *family) view(id string) store.Family {
	return store.Family{
		ID: id, Grant: f.grant, CreatedAt: fromMS(f.ca), ExpiresAt: fromMS(f.ex),
		Generation: f.g, Revoked: f.revoked,
	}
}

// knows reports whether h is any refresh token the family ever held.
func (f *family) knows(h string) bool {
	if h == "" {
		return false
	}
	_, used := f.used[h]
	return h == f.cur || h == f.prv || used
}

func (s *Store) putAT(family string, r store.AccessTokenRecord, now int64) {
	if ex := ms(r.ExpiresAt); ex > now {
		s.ats[pair{family, r.JTI}] = &atRecord{ex: ex, client: r.ClientID}
	}
}

// CreateCode stores a code. The same code again (same client and challenge) is a no-op; another
// live code or a live family under the same ids is an error.
func (s *Store) CreateCode(ctx context.Context, familyID, codeHash string, c store.Code, now time.Time) error {
	const op = "create authorization code"
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	k := pair{familyID, codeHash}
	if old := s.codes[k]; old != nil {
		if !old.redeemed && old.ex > n && old.grant.ClientID == c.ClientID && old.challenge == c.CodeChallenge {
			return nil // a retry of this call
		}
		if (old.redeemed && old.tb > n) || (!old.redeemed && old.ex > n) {
			return fmt.Errorf("%s: authorization code already exists", op)
		}
	}
	if s.liveFamily(familyID, n) != nil {
		return fmt.Errorf("%s: family already exists", op)
	}
	delete(s.codes, k)
	if ms(c.ExpiresAt) <= n {
		return nil
	}
	s.codes[k] = &code{grant: normGrant(c.Grant), challenge: c.CodeChallenge, ex: ms(c.ExpiresAt)}
	return nil
}

// GetCode returns the code without changing it; see store.Codes.
func (s *Store) GetCode(ctx context.Context, familyID, codeHash string, now time.Time) (store.Code, error) {
	const op = "get authorization code"
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	c := s.codes[pair{familyID, codeHash}]
	if c == nil {
		return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	out := store.Code{Grant: c.grant, CodeChallenge: c.challenge, ExpiresAt: fromMS(c.ex)}
	if c.redeemed {
		if c.tb <= n {
			return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
		return out, fmt.Errorf("%s: %w", op, store.ErrCodeReused)
	}
	if c.ex <= n {
		return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	return out, nil
}

// RedeemCode burns the code and creates its family; see store.Codes.
func (s *Store) RedeemCode(ctx context.Context, familyID, codeHash string, p store.FamilyParams, now time.Time) (store.Family, error) {
	const op = "redeem authorization code"
	at := p.AccessToken
	if at.Family != "" && at.Family != familyID {
		return store.Family{}, fmt.Errorf("%s: access token belongs to family %q, not %q", op, at.Family, familyID)
	}
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	c := s.codes[pair{familyID, codeHash}]
	if c == nil {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	f := s.liveFamily(familyID, n)
	if c.redeemed {
		if c.tb <= n {
			return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
		if f != nil {
			if at.JTI != "" && c.rj == at.JTI && !f.revoked {
				return f.view(familyID), nil
			}
			f.revoked = true
		}
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrCodeReused)
	}
	if c.ex <= n {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if f != nil {
		return store.Family{}, fmt.Errorf("%s: family already exists", op)
	}
	ex := ms(p.ExpiresAt)
	f = &family{
		grant: c.grant, ca: n, ex: ex, gc: ex + retention.AccessTokenGrace.Milliseconds(), g: 1,
		cur: p.RefreshHash, ci: n + p.IdleLifetime.Milliseconds(), used: map[string]int64{},
	}
	s.families[familyID] = f
	if at.JTI != "" {
		s.putAT(familyID, at, n)
	}
	c.redeemed, c.rj, c.tb = true, at.JTI, n+retention.CodeTombstone.Milliseconds()
	return f.view(familyID), nil
}

// RotateRefresh rotates the family's refresh token (decision D1); see store.Families.
func (s *Store) RotateRefresh(ctx context.Context, p store.RotateParams, now time.Time) (store.Family, error) {
	const op = "rotate refresh token"
	at := p.AccessToken
	if at.Family != "" && at.Family != p.Family {
		return store.Family{}, fmt.Errorf("%s: access token belongs to family %q, not %q", op, at.Family, p.Family)
	}
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	f := s.liveFamily(p.Family, n)
	if f == nil || !f.knows(p.PresentedHash) {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if f.grant.ClientID != p.ClientID {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrClientMismatch)
	}
	if f.revoked {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrRevoked)
	}
	if f.ex <= n {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	isCur := p.PresentedHash == f.cur
	isPrev := !isCur && p.PresentedHash == f.prv
	if isPrev && p.NewHash == f.cur {
		return f.view(p.Family), nil // a retry of the call that rotated
	}
	reuse := p.ReuseInterval.Milliseconds()
	switch {
	case isCur:
		if f.ci <= n {
			return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
	case isPrev && reuse > 0 && n < f.pa+reuse:
		if f.pi <= n {
			return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
	default:
		f.revoked = true
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrRefreshReused)
	}
	if p.MaxGenerations > 0 && f.g >= p.MaxGenerations {
		f.revoked = true
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrRevoked)
	}
	if p.NewHash == "" || f.knows(p.NewHash) {
		return store.Family{}, fmt.Errorf("%s: new refresh token hash is empty or already in the family", op)
	}
	ci := n + p.IdleLifetime.Milliseconds()
	if isCur {
		f.used[p.PresentedHash] = f.g
		f.prv, f.pa, f.pi = p.PresentedHash, n, f.ci
	} else {
		f.used[f.cur] = f.g // the replaced successor counts as used
	}
	f.cur, f.ci, f.g = p.NewHash, ci, f.g+1
	if at.JTI != "" {
		s.putAT(p.Family, at, n)
	}
	return f.view(p.Family), nil
}

// LookupRefresh answers only for the family's live token.
func (s *Store) LookupRefresh(ctx context.Context, familyID, h string, now time.Time) (store.Family, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	f := s.liveFamily(familyID, n)
	if f == nil || h == "" || f.cur != h || f.ci <= n || f.revoked || f.ex <= n {
		return store.Family{}, fmt.Errorf("look up refresh token: %w", store.ErrNotFound)
	}
	return f.view(familyID), nil
}

// RevokeRefresh revokes the family when h is any token it ever held.
func (s *Store) RevokeRefresh(ctx context.Context, familyID, h, clientID string, now time.Time) error {
	const op = "revoke refresh token"
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	f := s.liveFamily(familyID, n)
	if f == nil || !f.knows(h) {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if f.grant.ClientID != clientID {
		return fmt.Errorf("%s: %w", op, store.ErrClientMismatch)
	}
	f.revoked = true
	return nil
}

// RevokeFamily marks the family revoked. Idempotent.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	if f := s.liveFamily(familyID, n); f != nil {
		f.revoked = true
	}
	return nil
}

// RecordAccessToken records r; the same record again is a no-op, a different live one an error.
func (s *Store) RecordAccessToken(ctx context.Context, r store.AccessTokenRecord, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	if old := s.ats[pair{r.Family, r.JTI}]; old != nil && old.ex > n {
		if old.ex == ms(r.ExpiresAt) && old.client == r.ClientID {
			return nil
		}
		return errors.New("record access token: access token id already recorded")
	}
	s.putAT(r.Family, r, n)
	return nil
}

// AccessTokenActive checks the record and, for a family token, the family.
func (s *Store) AccessTokenActive(ctx context.Context, jti, familyID string, now time.Time) (bool, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	r := s.ats[pair{familyID, jti}]
	if r == nil || r.ex <= n || r.revoked {
		return false, nil
	}
	if familyID != "" {
		f := s.liveFamily(familyID, n)
		if f == nil || f.revoked {
			return false, nil
		}
	}
	return true, nil
}

// RevokeAccessToken marks the record revoked until its expiry.
func (s *Store) RevokeAccessToken(ctx context.Context, jti, familyID, clientID string, now time.Time) error {
	const op = "revoke access token"
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	r := s.ats[pair{familyID, jti}]
	if r == nil || r.ex <= n {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if r.client != clientID {
		return fmt.Errorf("%s: %w", op, store.ErrClientMismatch)
	}
	r.revoked = true
	return nil
}

// UseAssertion records the jti until expiresAt; a live one is ErrReplay.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expiresAt, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	k := pair{clientID, jti}
	if e, ok := s.asserts[k]; ok && e > n {
		return fmt.Errorf("use client assertion: %w", store.ErrReplay)
	}
	if e := ms(expiresAt); e > n {
		s.asserts[k] = e
	}
	return nil
}

// CreateSession replaces whatever idHash held.
func (s *Store) CreateSession(ctx context.Context, idHash string, ss store.Session, idle time.Duration, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	delete(s.sessions, idHash)
	ex, ie := ms(ss.ExpiresAt), n+idle.Milliseconds()
	if min(ex, ie) <= n {
		return nil
	}
	s.sessions[idHash] = &session{
		s:  store.Session{Subject: ss.Subject, AuthTime: norm(ss.AuthTime), ExpiresAt: fromMS(ex)},
		ex: ex, ie: ie,
	}
	return nil
}

// GetSession returns a live session and restarts its idle timer.
func (s *Store) GetSession(ctx context.Context, idHash string, idle time.Duration, now time.Time) (store.Session, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	ss := s.sessions[idHash]
	if ss == nil || ss.ex <= n || ss.ie <= n {
		return store.Session{}, fmt.Errorf("get session: %w", store.ErrNotFound)
	}
	ss.ie = n + idle.Milliseconds()
	return ss.s, nil
}

// DeleteSession ends a session. Idempotent.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, idHash)
	return nil
}

// PutAuthRequest stores a copy of value, or deletes the request when it has already expired.
func (s *Store) PutAuthRequest(ctx context.Context, idHash string, value []byte, expiresAt, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	if ms(expiresAt) <= n {
		delete(s.requests, idHash)
		return nil
	}
	s.requests[idHash] = &request{value: append([]byte{}, value...), ex: ms(expiresAt)}
	return nil
}

// GetAuthRequest returns a copy of the stored value.
func (s *Store) GetAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	r := s.requests[idHash]
	if r == nil || r.ex <= n {
		return nil, fmt.Errorf("get authorization request: %w", store.ErrNotFound)
	}
	return append([]byte{}, r.value...), nil
}

// TakeAuthRequest returns and deletes the request: exactly one caller gets it.
func (s *Store) TakeAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	r := s.requests[idHash]
	delete(s.requests, idHash)
	if r == nil || r.ex <= n {
		return nil, fmt.Errorf("take authorization request: %w", store.ErrNotFound)
	}
	return r.value, nil
}

func pruneConsent(m map[string]int64, now int64) {
	for sc, e := range m {
		if e <= now {
			delete(m, sc)
		}
	}
}

// SaveConsent merges the scopes; the latest decision for a scope sets its expiry.
func (s *Store) SaveConsent(ctx context.Context, subject, clientID string, scopes []string, expiresAt, now time.Time) error {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	k := pair{subject, clientID}
	m := s.consents[k]
	if m == nil {
		m = map[string]int64{}
	}
	pruneConsent(m, n)
	if e := ms(expiresAt); e > n {
		for _, sc := range scopes {
			m[sc] = e
		}
	}
	if len(m) == 0 {
		delete(s.consents, k)
		return nil
	}
	s.consents[k] = m
	return nil
}

// HasConsent reports whether every scope was allowed and has not expired; with no scopes,
// whether any unexpired consent exists for the pair.
func (s *Store) HasConsent(ctx context.Context, subject, clientID string, scopes []string, now time.Time) (bool, error) {
	n := ms(now)
	s.lock(n)
	defer s.mu.Unlock()
	m := s.consents[pair{subject, clientID}]
	if len(scopes) == 0 {
		for _, e := range m {
			if e > n {
				return true, nil
			}
		}
		return false, nil
	}
	for _, sc := range scopes {
		if e, ok := m[sc]; !ok || e <= n {
			return false, nil
		}
	}
	return true, nil
}

// RevokeConsent forgets the pair's consent.
func (s *Store) RevokeConsent(ctx context.Context, subject, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.consents, pair{subject, clientID})
	return nil
}

// Hit counts in fixed windows aligned to the Unix epoch, like the Redis store.
func (s *Store) Hit(ctx context.Context, key string, n int64, window time.Duration, now time.Time) (int64, time.Time, error) {
	if window < time.Millisecond || n < 0 {
		return 0, time.Time{}, fmt.Errorf("count rate limit hit: window %v or count %d out of range", window, n)
	}
	t := ms(now)
	s.lock(t)
	defer s.mu.Unlock()
	w := window.Milliseconds()
	start := floorDiv(t, w) * w
	k := limitKey{key: key, start: start}
	c := s.limits[k]
	if c == nil {
		if n == 0 {
			return 0, fromMS(start + w), nil
		}
		c = &counter{end: start + w}
		s.limits[k] = c
	}
	c.n += n
	return c.n, fromMS(start + w), nil
}

// RecordAccessTokenAndHit is RecordAccessToken and HitGroup (store.RecordAndHitter); memory
// has no round trips to save.
func (s *Store) RecordAccessTokenAndHit(ctx context.Context, r store.AccessTokenRecord, group string, hits []store.LimitHit, now time.Time) ([]store.LimitCount, error, error) {
	counts, hitErr := s.HitGroup(ctx, group, hits, now)
	if hitErr != nil {
		return nil, hitErr, nil
	}
	return counts, nil, s.RecordAccessToken(ctx, r, now)
}

// HitGroup counts like Hit, under one lock, so the group's counters move together.
func (s *Store) HitGroup(ctx context.Context, group string, hits []store.LimitHit, now time.Time) ([]store.LimitCount, error) {
	if len(hits) == 0 {
		return nil, errors.New("count rate limit hits: no counters")
	}
	for _, h := range hits {
		if h.Window < time.Millisecond || h.N < 0 {
			return nil, fmt.Errorf("count rate limit hits: window %v or count %d out of range", h.Window, h.N)
		}
	}
	t := ms(now)
	s.lock(t)
	defer s.mu.Unlock()
	out := make([]store.LimitCount, len(hits))
	for i, h := range hits {
		w := h.Window.Milliseconds()
		start := floorDiv(t, w) * w
		out[i].ResetAt = fromMS(start + w)
		k := limitKey{key: group, start: start, name: h.Name, grouped: true}
		c := s.limits[k]
		if c == nil {
			if h.N == 0 {
				continue
			}
			c = &counter{end: start + w}
			s.limits[k] = c
		}
		c.n += h.N
		out[i].Count = c.n
	}
	return out, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
