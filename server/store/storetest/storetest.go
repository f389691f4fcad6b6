// Package storetest is the one conformance suite every store.Store implementation passes (the
// shape of dex's storage/conformance): the Redis store runs it against a real redis-server,
// standalone and Cluster, and the memory store against itself.
//
// Time moves through the now parameter only; nothing sleeps, and nothing asserts on timing.
// Concurrency tests start 100 goroutines on one code, refresh token, assertion or request and
// count winners (SECURITY-CASES 23, 32, 33, 51, 83), which the race detector also watches.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
)

// Run runs every conformance test against stores made by newStore, which must return an empty
// store (or one whose state no other subtest sees) each time it is called.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

var tests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Ping", testPing},
	{"CodeCreateAndGet", testCodeCreateGet},
	{"GrantRoundTrips", testGrantRoundTrips},
	{"RotateStopsAtMaxGenerations", testRotateMaxGenerations},
	{"CodeGetUnknown", testCodeGetUnknown},
	{"CodeExpiresAfter60s", testCodeExpiry},
	{"CodeGetDoesNotBurn", testCodeGetDoesNotBurn},
	{"CodeRedeem", testCodeRedeem},
	{"CodeReuseRevokesFamily", testCodeReuse},
	{"CodeRedeemRetryIsIdempotent", testCodeRedeemRetry},
	{"CodeWithoutRefreshToken", testCodeWithoutRefresh},
	{"CodeCreateTwiceFails", testCodeCreateTwice},
	{"CodeRedeemWrongFamilyTokenFails", testCodeRedeemWrongATFamily},
	{"CodeRedeemConcurrentOneWinner", testCodeRedeemConcurrent},
	{"RotateCountsGenerations", testRotate},
	{"RotateReuseRevokesFamily", testRotateReuse},
	{"RotateOlderUsedTokenRevokes", testRotateOlderUsed},
	{"RotateReuseWindowReplacesSuccessor", testRotateReuseWindow},
	{"RotateReplacedSuccessorRevokes", testRotateReplacedSuccessor},
	{"RotateReuseAfterWindowRevokes", testRotateReuseAfterWindow},
	{"RotateIdleExpiry", testRotateIdle},
	{"RotateKeepsWorkingUntilAbsoluteExpiry", testRotateUntilAbsolute},
	{"RotateIdleExpiredInsideReuseWindow", testRotateIdleInWindow},
	{"RotateUnknownHash", testRotateUnknown},
	{"RotateClientMismatchChangesNothing", testRotateClientMismatch},
	{"RotateRetryIsIdempotent", testRotateRetry},
	{"RotateNewHashMustBeNew", testRotateNewHashKnown},
	{"RotateConcurrentNoReuseInterval", testRotateConcurrentNoReuse},
	{"RotateConcurrentWithReuseInterval", testRotateConcurrentReuse},
	{"LookupRefresh", testLookupRefresh},
	{"RevokeRefresh", testRevokeRefresh},
	{"RevokeFamily", testRevokeFamily},
	{"AccessTokenClientCredentials", testATClientCredentials},
	{"AccessTokenOfFamily", testATFamily},
	{"AccessTokenRevoke", testATRevoke},
	{"AccessTokenRecordTwice", testATRecordTwice},
	{"Assertion", testAssertion},
	{"AssertionConcurrentOneWinner", testAssertionConcurrent},
	{"SessionIdleExpiry", testSessionIdle},
	{"SessionAbsoluteExpiry", testSessionAbsolute},
	{"SessionDelete", testSessionDelete},
	{"AuthRequest", testAuthRequest},
	{"AuthRequestTakeConcurrentOneWinner", testAuthRequestConcurrent},
	{"Consent", testConsent},
	{"Limiter", testLimiter},
	{"LimiterConcurrent", testLimiterConcurrent},
	{"LimiterGroup", testLimiterGroup},
	{"LimiterGroupConcurrent", testLimiterGroupConcurrent},
	{"RecordAccessTokenAndHit", testRecordAndHit},
	{"IdentifiersWithSeparators", testOddIDs},
}

const (
	clientA  = "client-a"
	clientB  = "client-b"
	workers  = 100
	codeLife = 60 * time.Second
)

// ctx bounds every call so a hung backend fails the test instead of hanging it.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Secret returns a fresh 256-bit random value, base64url, like the server's tokens.
func Secret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Now is a starting time rounded to the millisecond, the stores' resolution.
func Now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func wantActive(t testing.TB, s store.Store, jti, family string, now time.Time, want bool) {
	t.Helper()
	got, err := s.AccessTokenActive(context.Background(), jti, family, now)
	must(t, err)
	if got != want {
		t.Fatalf("access token %s of family %q active = %v, want %v", jti, family, got, want)
	}
}

func testGrant(now time.Time) store.Grant {
	return store.Grant{
		ClientID:    clientA,
		Subject:     "alice",
		Scope:       "openid orders.read profile",
		AuthTime:    now.Add(-time.Minute),
		Nonce:       "n-0S6_WzA2Mj",
		RedirectURI: "https://shop.example.com/callback",
		Audience:    "orders-api shop",
	}
}

// Fixture is one redeemed authorization code: a family with its first refresh and access
// tokens.
type Fixture struct {
	Family   string
	Code     string // raw code
	Verifier string // raw PKCE verifier; only its S256 challenge is stored
	Refresh  string // raw live refresh token
	JTI      string // first access token
	Created  time.Time
	Expires  time.Time
	Idle     time.Duration
	Grant    store.Grant
	Returned store.Family
}

// NewCode creates an authorization code for clientA and returns the fixture before redemption.
func NewCode(t testing.TB, s store.Store, now time.Time) *Fixture {
	t.Helper()
	f := &Fixture{
		Family: Secret(t), Code: Secret(t), Verifier: Secret(t), Refresh: Secret(t), JTI: Secret(t),
		Created: now, Expires: now.Add(7 * 24 * time.Hour), Idle: 24 * time.Hour, Grant: testGrant(now),
	}
	must(t, s.CreateCode(context.Background(), f.Family, store.Hash(f.Code), store.Code{
		Grant: f.Grant, CodeChallenge: store.Hash(f.Verifier), ExpiresAt: now.Add(codeLife),
	}, now))
	return f
}

// Params are the family parameters with which the fixture is redeemed.
func (f *Fixture) Params(now time.Time) store.FamilyParams {
	return store.FamilyParams{
		RefreshHash: store.Hash(f.Refresh), ExpiresAt: f.Expires, IdleLifetime: f.Idle,
		AccessToken: store.AccessTokenRecord{JTI: f.JTI, ClientID: clientA, Family: f.Family, ExpiresAt: now.Add(15 * time.Minute)},
	}
}

// NewFamily creates and redeems a code.
func NewFamily(t testing.TB, s store.Store, now time.Time) *Fixture {
	t.Helper()
	f := NewCode(t, s, now)
	fam, err := s.RedeemCode(context.Background(), f.Family, store.Hash(f.Code), f.Params(now), now)
	must(t, err)
	f.Returned = fam
	return f
}

// Rotate rotates the fixture's live refresh token and returns the new raw token and jti.
func (f *Fixture) Rotate(t testing.TB, s store.Store, now time.Time, reuse time.Duration) (store.Family, string, string, error) {
	t.Helper()
	return f.RotateFrom(t, s, f.Refresh, now, reuse)
}

// RotateFrom presents presented (raw) and, on success, makes the new token the fixture's live one.
func (f *Fixture) RotateFrom(t testing.TB, s store.Store, presented string, now time.Time, reuse time.Duration) (store.Family, string, string, error) {
	t.Helper()
	next, jti := Secret(t), Secret(t)
	fam, err := s.RotateRefresh(context.Background(), f.rotateParams(presented, next, jti, clientA, now, reuse), now)
	if err == nil {
		f.Refresh = next
	}
	return fam, next, jti, err
}

func (f *Fixture) rotateParams(presented, next, jti, client string, now time.Time, reuse time.Duration) store.RotateParams {
	return store.RotateParams{
		Family: f.Family, PresentedHash: store.Hash(presented), NewHash: store.Hash(next), ClientID: client,
		IdleLifetime: f.Idle, ReuseInterval: reuse,
		AccessToken: store.AccessTokenRecord{JTI: jti, ClientID: client, Family: f.Family, ExpiresAt: now.Add(15 * time.Minute)},
	}
}

func wantLive(t testing.TB, s store.Store, f *Fixture, raw string, now time.Time) store.Family {
	t.Helper()
	fam, err := s.LookupRefresh(context.Background(), f.Family, store.Hash(raw), now)
	if err != nil {
		t.Fatalf("refresh token not live: %v", err)
	}
	return fam
}

func wantDead(t testing.TB, s store.Store, f *Fixture, raw string, now time.Time) {
	t.Helper()
	_, err := s.LookupRefresh(context.Background(), f.Family, store.Hash(raw), now)
	wantErr(t, err, store.ErrNotFound)
}

func wantRevoked(t testing.TB, s store.Store, f *Fixture, now time.Time) {
	t.Helper()
	_, _, _, err := f.Rotate(t, s, now, 0)
	wantErr(t, err, store.ErrRevoked)
	wantDead(t, s, f, f.Refresh, now)
}

// concurrently runs fn(i) for i in [0, workers) at once and returns the errors.
func concurrently(fn func(i int) error) []error {
	errs := make([]error, workers)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range workers {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

func countNil(t testing.TB, errs []error, others ...error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
			continue
		}
		ok := false
		for _, o := range others {
			ok = ok || errors.Is(err, o)
		}
		if !ok {
			t.Fatalf("unexpected error: %v", err)
		}
	}
	return n
}

func testPing(t *testing.T, s store.Store) {
	must(t, s.Ping(ctx(t)))
}

// --- codes ---

func testCodeCreateGet(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	got, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), now.Add(time.Second))
	must(t, err)
	want := store.Code{Grant: f.Grant, CodeChallenge: store.Hash(f.Verifier), ExpiresAt: now.Add(codeLife)}
	if got != want {
		t.Fatalf("GetCode = %+v, want %+v", got, want)
	}
	// A zero auth time and empty optional fields survive the round trip.
	fam, hash := Secret(t), Secret(t)
	bare := store.Code{Grant: store.Grant{ClientID: clientA, Subject: "bob"}, CodeChallenge: "c", ExpiresAt: now.Add(codeLife)}
	must(t, s.CreateCode(ctx(t), fam, hash, bare, now))
	got, err = s.GetCode(ctx(t), fam, hash, now)
	must(t, err)
	if got != bare {
		t.Fatalf("GetCode = %+v, want %+v", got, bare)
	}
}

func testCodeGetUnknown(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	_, err := s.GetCode(ctx(t), f.Family, store.Hash(Secret(t)), now)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetCode(ctx(t), Secret(t), store.Hash(f.Code), now)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(Secret(t)), f.Params(now), now)
	wantErr(t, err, store.ErrNotFound)
}

func testCodeExpiry(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	g := NewCode(t, s, now)
	last := now.Add(codeLife - time.Millisecond)
	_, err := s.RedeemCode(ctx(t), g.Family, store.Hash(g.Code), g.Params(last), last)
	must(t, err)
	_, err = s.GetCode(ctx(t), f.Family, store.Hash(f.Code), last)
	must(t, err)
	late := now.Add(codeLife)
	_, err = s.GetCode(ctx(t), f.Family, store.Hash(f.Code), late)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(late), late)
	wantErr(t, err, store.ErrNotFound)
	// Nothing was created.
	wantDead(t, s, f, f.Refresh, late)
	wantActive(t, s, f.JTI, f.Family, late, false)
}

func testCodeGetDoesNotBurn(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	for range 3 {
		_, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), now)
		must(t, err)
	}
	_, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(now), now)
	must(t, err)
}

func testCodeRedeem(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	at := now.Add(2 * time.Second)
	fam, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(at), at)
	must(t, err)
	want := store.Family{ID: f.Family, Grant: f.Grant, CreatedAt: at, ExpiresAt: f.Expires, Generation: 1}
	if fam != want {
		t.Fatalf("RedeemCode = %+v, want %+v", fam, want)
	}
	if got := wantLive(t, s, f, f.Refresh, at); got != want {
		t.Fatalf("LookupRefresh = %+v, want %+v", got, want)
	}
	wantActive(t, s, f.JTI, f.Family, at, true)
	// The token is recorded as a family token, not a client-credentials one.
	wantActive(t, s, f.JTI, "", at, false)
}

// Case 22: a replay, at once, after 30 s and after the code's own expiry, revokes what the
// first redemption issued; GetCode alone never revokes.
func testCodeReuse(t *testing.T, s store.Store) {
	for _, delay := range []time.Duration{0, 30 * time.Second, 5 * time.Minute} {
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			now := Now()
			f := NewFamily(t, s, now)
			later := now.Add(delay)
			c, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), later)
			wantErr(t, err, store.ErrCodeReused)
			if c.ClientID != clientA || c.CodeChallenge != store.Hash(f.Verifier) || c.RedirectURI != f.Grant.RedirectURI {
				t.Fatalf("GetCode of a redeemed code returned %+v, want the stored code", c)
			}
			wantLive(t, s, f, f.Refresh, later)
			wantActive(t, s, f.JTI, f.Family, later, true)

			replay := f.Params(later)
			replay.RefreshHash, replay.AccessToken.JTI = store.Hash(Secret(t)), Secret(t)
			_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), replay, later)
			wantErr(t, err, store.ErrCodeReused)
			wantActive(t, s, f.JTI, f.Family, later, false)
			wantActive(t, s, replay.AccessToken.JTI, f.Family, later, false)
			wantDead(t, s, f, f.Refresh, later)
			wantRevoked(t, s, f, later)
			_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), replay, later)
			wantErr(t, err, store.ErrCodeReused)
		})
	}
	t.Run("after the tombstone", func(t *testing.T) {
		now := Now()
		f := NewFamily(t, s, now)
		gone := now.Add(retention.CodeTombstone)
		_, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), gone)
		wantErr(t, err, store.ErrNotFound)
		_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(gone), gone)
		wantErr(t, err, store.ErrNotFound)
		wantLive(t, s, f, f.Refresh, gone)
	})
}

func testCodeRedeemRetry(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	later := now.Add(time.Millisecond)
	fam, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(now), later)
	must(t, err)
	if fam != f.Returned {
		t.Fatalf("retried RedeemCode = %+v, want %+v", fam, f.Returned)
	}
	wantLive(t, s, f, f.Refresh, later)
	wantActive(t, s, f.JTI, f.Family, later, true)
}

func testCodeWithoutRefresh(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	p := f.Params(now)
	p.RefreshHash = ""
	_, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), p, now)
	must(t, err)
	wantActive(t, s, f.JTI, f.Family, now, true)
	_, err = s.LookupRefresh(ctx(t), f.Family, "", now)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RotateRefresh(ctx(t), store.RotateParams{Family: f.Family, NewHash: store.Hash(Secret(t)), ClientID: clientA, IdleLifetime: time.Hour}, now)
	wantErr(t, err, store.ErrNotFound)
	err = s.RevokeRefresh(ctx(t), f.Family, "", clientA, now)
	wantErr(t, err, store.ErrNotFound)
	// A replayed code still revokes the family's access tokens.
	p.AccessToken.JTI = Secret(t)
	_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), p, now)
	wantErr(t, err, store.ErrCodeReused)
	wantActive(t, s, f.JTI, f.Family, now, false)
}

func testCodeCreateTwice(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	// The same code again is a retry of the call and changes nothing.
	must(t, s.CreateCode(ctx(t), f.Family, store.Hash(f.Code), store.Code{
		Grant: f.Grant, CodeChallenge: store.Hash(f.Verifier), ExpiresAt: now.Add(codeLife),
	}, now))
	c := store.Code{Grant: testGrant(now), CodeChallenge: "x", ExpiresAt: now.Add(codeLife)}
	if err := s.CreateCode(ctx(t), f.Family, store.Hash(f.Code), c, now); err == nil {
		t.Fatal("creating another code under an existing hash succeeded")
	}
	got, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), now)
	must(t, err)
	if got.CodeChallenge != store.Hash(f.Verifier) {
		t.Fatal("creating an existing code replaced it")
	}
	_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(now), now)
	must(t, err)
	// A redeemed code is never created again, not even as a retry.
	if err := s.CreateCode(ctx(t), f.Family, store.Hash(f.Code), store.Code{
		Grant: f.Grant, CodeChallenge: store.Hash(f.Verifier), ExpiresAt: now.Add(codeLife),
	}, now); err == nil {
		t.Fatal("re-creating a redeemed code succeeded")
	}
	// A code for a family that already exists cannot be created either.
	g := NewFamily(t, s, now)
	if err := s.CreateCode(ctx(t), g.Family, store.Hash(Secret(t)), c, now); err == nil {
		t.Fatal("creating a code for an existing family succeeded")
	}
}

func testCodeRedeemWrongATFamily(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	p := f.Params(now)
	p.AccessToken.Family = Secret(t)
	if _, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), p, now); err == nil {
		t.Fatal("RedeemCode accepted an access token of another family")
	}
	_, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), now)
	must(t, err)
	// Family "" means the code's family.
	p.AccessToken.Family = ""
	_, err = s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), p, now)
	must(t, err)
	wantActive(t, s, f.JTI, f.Family, now, true)
}

// Case 23: exactly one of 100 concurrent redemptions wins, the rest see reuse, and the family
// the winner created ends revoked.
func testCodeRedeemConcurrent(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	params := make([]store.FamilyParams, workers)
	for i := range params {
		params[i] = f.Params(now)
		params[i].RefreshHash, params[i].AccessToken.JTI = store.Hash(Secret(t)), Secret(t)
	}
	errs := concurrently(func(i int) error {
		_, err := s.RedeemCode(context.Background(), f.Family, store.Hash(f.Code), params[i], now)
		return err
	})
	if n := countNil(t, errs, store.ErrCodeReused); n != 1 {
		t.Fatalf("%d redemptions won, want exactly 1", n)
	}
	for i, err := range errs {
		wantActive(t, s, params[i].AccessToken.JTI, f.Family, now, false)
		if err == nil {
			_, err := s.LookupRefresh(ctx(t), f.Family, params[i].RefreshHash, now)
			wantErr(t, err, store.ErrNotFound)
		}
	}
}

// --- refresh tokens ---

func testRotate(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	for gen := int64(2); gen <= 5; gen++ {
		now = now.Add(time.Minute)
		prev := f.Refresh
		fam, _, jti, err := f.Rotate(t, s, now, 0)
		must(t, err)
		want := f.Returned
		want.Generation = gen
		if fam != want {
			t.Fatalf("RotateRefresh = %+v, want %+v", fam, want)
		}
		if got := wantLive(t, s, f, f.Refresh, now); got != want {
			t.Fatalf("LookupRefresh = %+v, want %+v", got, want)
		}
		wantDead(t, s, f, prev, now)
		wantActive(t, s, jti, f.Family, now, true)
	}
	wantDead(t, s, f, r0, now)
	wantActive(t, s, f.JTI, f.Family, now, true)
}

// Case 31: with reuseInterval 0 any reuse revokes the family, the successor and every access
// token included.
func testRotateReuse(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, r1, jti1, err := f.Rotate(t, s, now, 0)
	must(t, err)
	later := now.Add(time.Second)
	_, _, _, err = f.RotateFrom(t, s, r0, later, 0)
	wantErr(t, err, store.ErrRefreshReused)
	wantDead(t, s, f, r1, later)
	wantActive(t, s, f.JTI, f.Family, later, false)
	wantActive(t, s, jti1, f.Family, later, false)
	_, _, _, err = f.RotateFrom(t, s, r1, later, 0)
	wantErr(t, err, store.ErrRevoked)
	_, _, _, err = f.RotateFrom(t, s, r0, later, 0)
	wantErr(t, err, store.ErrRevoked)
}

// Only the token rotated just before the live one may come back; an older one revokes, even
// inside the reuse interval.
func testRotateOlderUsed(t *testing.T, s store.Store) {
	now := Now()
	reuse := 10 * time.Second
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, _, _, err := f.Rotate(t, s, now, reuse)
	must(t, err)
	_, _, _, err = f.Rotate(t, s, now.Add(time.Second), reuse)
	must(t, err)
	_, _, _, err = f.RotateFrom(t, s, r0, now.Add(2*time.Second), reuse)
	wantErr(t, err, store.ErrRefreshReused)
	wantRevoked(t, s, f, now.Add(2*time.Second))
}

// Decision D1: inside the reuse interval the just-rotated token gets a new successor, and the
// successor issued before is revoked, so exactly one token is live.
func testRotateReuseWindow(t *testing.T, s store.Store) {
	now := Now()
	reuse := 10 * time.Second
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, r1, jti1, err := f.Rotate(t, s, now, reuse)
	must(t, err)
	at := now.Add(reuse - time.Millisecond)
	fam, r2, jti2, err := f.RotateFrom(t, s, r0, at, reuse)
	must(t, err)
	if fam.Generation != 3 {
		t.Fatalf("generation = %d, want 3", fam.Generation)
	}
	wantDead(t, s, f, r0, at)
	wantDead(t, s, f, r1, at)
	wantLive(t, s, f, r2, at)
	// Access tokens already issued stay valid: only the refresh chain is kept from forking.
	wantActive(t, s, jti1, f.Family, at, true)
	wantActive(t, s, jti2, f.Family, at, true)
	// The live token rotates on normally.
	fam, _, _, err = f.Rotate(t, s, at, reuse)
	must(t, err)
	if fam.Generation != 4 {
		t.Fatalf("generation = %d, want 4", fam.Generation)
	}
}

// A successor replaced inside the reuse interval counts as used: presenting it revokes.
func testRotateReplacedSuccessor(t *testing.T, s store.Store) {
	now := Now()
	reuse := 10 * time.Second
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, r1, _, err := f.Rotate(t, s, now, reuse)
	must(t, err)
	_, _, _, err = f.RotateFrom(t, s, r0, now.Add(time.Second), reuse)
	must(t, err)
	_, _, _, err = f.RotateFrom(t, s, r1, now.Add(2*time.Second), reuse)
	wantErr(t, err, store.ErrRefreshReused)
	wantRevoked(t, s, f, now.Add(2*time.Second))
}

// Case 35: reuse after the interval revokes the family.
func testRotateReuseAfterWindow(t *testing.T, s store.Store) {
	now := Now()
	reuse := 10 * time.Second
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, _, _, err := f.Rotate(t, s, now, reuse)
	must(t, err)
	_, _, _, err = f.RotateFrom(t, s, r0, now.Add(reuse), reuse)
	wantErr(t, err, store.ErrRefreshReused)
	wantRevoked(t, s, f, now.Add(reuse))
}

// Case 36: a token unused for its idle lifetime is not found, and nothing is revoked.
func testRotateIdle(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	g := NewFamily(t, s, now)
	late := now.Add(f.Idle)
	jti := Secret(t)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jti, ClientID: clientA, Family: f.Family, ExpiresAt: late.Add(time.Hour)}, now))
	// Just before the idle deadline it still rotates, and the new token has its own deadline.
	_, _, _, err := g.Rotate(t, s, late.Add(-time.Millisecond), 0)
	must(t, err)
	_, _, _, err = f.Rotate(t, s, late, 0)
	wantErr(t, err, store.ErrNotFound)
	wantDead(t, s, f, f.Refresh, late)
	wantActive(t, s, jti, f.Family, late, true)
	_, _, _, err = f.Rotate(t, s, late, 0)
	wantErr(t, err, store.ErrNotFound)
	wantLive(t, s, g, g.Refresh, late.Add(g.Idle-2*time.Millisecond))
	wantDead(t, s, g, g.Refresh, late.Add(g.Idle-time.Millisecond))
}

// Case 36: used every idle-1s the family keeps working until its absolute expiry, then not
// even a token used a moment before works.
func testRotateUntilAbsolute(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	step := f.Idle - time.Second
	at := now
	gen := int64(1)
	for at.Add(step).Before(f.Expires) {
		at = at.Add(step)
		fam, _, _, err := f.Rotate(t, s, at, 0)
		must(t, err)
		gen++
		if fam.Generation != gen {
			t.Fatalf("generation = %d, want %d", fam.Generation, gen)
		}
	}
	wantLive(t, s, f, f.Refresh, f.Expires.Add(-time.Millisecond))
	wantDead(t, s, f, f.Refresh, f.Expires)
	_, _, _, err := f.Rotate(t, s, f.Expires, 0)
	wantErr(t, err, store.ErrNotFound)
}

// Case 35: an idle-expired token is not found even inside the reuse interval, and the family
// is not revoked.
func testRotateIdleInWindow(t *testing.T, s store.Store) {
	now := Now()
	reuse := 30 * time.Second
	f := NewFamily(t, s, now)
	f.Idle = 10 * time.Second
	// Start a chain with a 10 s idle lifetime.
	_, _, _, err := f.Rotate(t, s, now, reuse)
	must(t, err)
	r1 := f.Refresh
	_, _, _, err = f.Rotate(t, s, now.Add(9*time.Second), reuse)
	must(t, err)
	_, _, _, err = f.RotateFrom(t, s, r1, now.Add(11*time.Second), reuse) // r1 idled out at +10 s
	wantErr(t, err, store.ErrNotFound)
	wantLive(t, s, f, f.Refresh, now.Add(11*time.Second))
}

func testRotateUnknown(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	_, _, _, err := f.RotateFrom(t, s, Secret(t), now, 0)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RotateRefresh(ctx(t), store.RotateParams{Family: Secret(t), PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(Secret(t)), ClientID: clientA}, now)
	wantErr(t, err, store.ErrNotFound)
	wantLive(t, s, f, f.Refresh, now)
	fam, _, _, err := f.Rotate(t, s, now, 0)
	must(t, err)
	if fam.Generation != 2 {
		t.Fatalf("generation = %d, want 2", fam.Generation)
	}
}

// Case 38: another client's attempt changes nothing, with a live or a used token.
func testRotateClientMismatch(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	p := f.rotateParams(f.Refresh, Secret(t), Secret(t), clientB, now, 0)
	_, err := s.RotateRefresh(ctx(t), p, now)
	wantErr(t, err, store.ErrClientMismatch)
	wantActive(t, s, p.AccessToken.JTI, f.Family, now, false)
	_, _, _, err = f.Rotate(t, s, now, 0)
	must(t, err)
	p = f.rotateParams(r0, Secret(t), Secret(t), clientB, now, 0)
	_, err = s.RotateRefresh(ctx(t), p, now)
	wantErr(t, err, store.ErrClientMismatch)
	fam := wantLive(t, s, f, f.Refresh, now)
	if fam.Revoked || fam.Generation != 2 {
		t.Fatalf("family changed by another client: %+v", fam)
	}
}

// A retried rotation (same presented and new hash, e.g. after a lost reply) is not reuse.
func testRotateRetry(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	p := f.rotateParams(f.Refresh, Secret(t), Secret(t), clientA, now, 0)
	fam1, err := s.RotateRefresh(ctx(t), p, now)
	must(t, err)
	later := now.Add(time.Second)
	fam2, err := s.RotateRefresh(ctx(t), p, later)
	must(t, err)
	if fam1 != fam2 || fam2.Generation != 2 {
		t.Fatalf("retry returned %+v, first call %+v", fam2, fam1)
	}
	_, err = s.LookupRefresh(ctx(t), f.Family, p.NewHash, later)
	must(t, err)
	wantActive(t, s, p.AccessToken.JTI, f.Family, later, true)
}

func testRotateNewHashKnown(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	r0 := f.Refresh
	_, _, _, err := f.Rotate(t, s, now, 0)
	must(t, err)
	for _, next := range []string{"", store.Hash(f.Refresh), store.Hash(r0)} {
		p := f.rotateParams(f.Refresh, "", Secret(t), clientA, now, 0)
		p.NewHash = next
		if _, err := s.RotateRefresh(ctx(t), p, now); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("rotating to %q: got %v, want a plain error", next, err)
		}
	}
	fam := wantLive(t, s, f, f.Refresh, now)
	if fam.Generation != 2 || fam.Revoked {
		t.Fatalf("family changed: %+v", fam)
	}
}

// Case 32: 100 concurrent rotations of one token with reuseInterval 0: one wins, the family
// ends revoked, and no two successors are ever live.
func testRotateConcurrentNoReuse(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	params := make([]store.RotateParams, workers)
	for i := range params {
		params[i] = f.rotateParams(f.Refresh, Secret(t), Secret(t), clientA, now, 0)
	}
	errs := concurrently(func(i int) error {
		_, err := s.RotateRefresh(context.Background(), params[i], now)
		return err
	})
	if n := countNil(t, errs, store.ErrRefreshReused, store.ErrRevoked); n != 1 {
		t.Fatalf("%d rotations won, want exactly 1", n)
	}
	for i := range params {
		_, err := s.LookupRefresh(ctx(t), f.Family, params[i].NewHash, now)
		wantErr(t, err, store.ErrNotFound)
		wantActive(t, s, params[i].AccessToken.JTI, f.Family, now, false)
	}
	wantRevoked(t, s, f, now)
}

// Case 33: with a reuse interval all 100 succeed, each replacing the one before, and exactly
// one successor is live at the end (the family never forks).
func testRotateConcurrentReuse(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	params := make([]store.RotateParams, workers)
	for i := range params {
		params[i] = f.rotateParams(f.Refresh, Secret(t), Secret(t), clientA, now, 10*time.Second)
	}
	errs := concurrently(func(i int) error {
		_, err := s.RotateRefresh(context.Background(), params[i], now)
		return err
	})
	if n := countNil(t, errs); n != workers {
		t.Fatalf("%d rotations succeeded, want %d", n, workers)
	}
	live := 0
	for i := range params {
		fam, err := s.LookupRefresh(ctx(t), f.Family, params[i].NewHash, now)
		if err == nil {
			live++
			if fam.Generation != workers+1 {
				t.Fatalf("generation = %d, want %d", fam.Generation, workers+1)
			}
			continue
		}
		wantErr(t, err, store.ErrNotFound)
	}
	if live != 1 {
		t.Fatalf("%d refresh tokens live, want exactly 1", live)
	}
}

func testLookupRefresh(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	_, err := s.LookupRefresh(ctx(t), f.Family, store.Hash(Secret(t)), now)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.LookupRefresh(ctx(t), Secret(t), store.Hash(f.Refresh), now)
	wantErr(t, err, store.ErrNotFound)
	wantLive(t, s, f, f.Refresh, now)
	must(t, s.RevokeFamily(ctx(t), f.Family, now))
	wantDead(t, s, f, f.Refresh, now)
}

// Case 42 and RFC 7009 §2.1: revoking any token of the chain revokes the family.
func testRevokeRefresh(t *testing.T, s store.Store) {
	now := Now()
	t.Run("live token", func(t *testing.T) {
		f := NewFamily(t, s, now)
		wantErr(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(f.Refresh), clientB, now), store.ErrClientMismatch)
		wantLive(t, s, f, f.Refresh, now)
		must(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(f.Refresh), clientA, now))
		wantActive(t, s, f.JTI, f.Family, now, false)
		wantRevoked(t, s, f, now)
		must(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(f.Refresh), clientA, now))
	})
	t.Run("used token", func(t *testing.T) {
		f := NewFamily(t, s, now)
		r0 := f.Refresh
		_, _, jti, err := f.Rotate(t, s, now, 0)
		must(t, err)
		wantErr(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(r0), clientB, now), store.ErrClientMismatch)
		wantLive(t, s, f, f.Refresh, now)
		must(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(r0), clientA, now))
		wantActive(t, s, jti, f.Family, now, false)
		wantRevoked(t, s, f, now)
	})
	t.Run("unknown token", func(t *testing.T) {
		f := NewFamily(t, s, now)
		wantErr(t, s.RevokeRefresh(ctx(t), f.Family, store.Hash(Secret(t)), clientA, now), store.ErrNotFound)
		wantErr(t, s.RevokeRefresh(ctx(t), Secret(t), store.Hash(f.Refresh), clientA, now), store.ErrNotFound)
		wantLive(t, s, f, f.Refresh, now)
	})
}

func testRevokeFamily(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now)
	must(t, s.RevokeFamily(ctx(t), f.Family, now))
	must(t, s.RevokeFamily(ctx(t), f.Family, now))
	wantActive(t, s, f.JTI, f.Family, now, false)
	wantRevoked(t, s, f, now)
	must(t, s.RevokeFamily(ctx(t), Secret(t), now))
}

// --- access tokens ---

func testATClientCredentials(t *testing.T, s store.Store) {
	now := Now()
	jti := Secret(t)
	exp := now.Add(15 * time.Minute)
	wantActive(t, s, jti, "", now, false)
	// A record that has already expired is not kept.
	old := Secret(t)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: old, ClientID: clientA, ExpiresAt: now}, now))
	wantActive(t, s, old, "", now, false)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jti, ClientID: clientA, ExpiresAt: exp}, now))
	wantActive(t, s, jti, "", now, true)
	wantActive(t, s, jti, Secret(t), now, false)
	wantActive(t, s, jti, "", exp.Add(-time.Millisecond), true)
	wantActive(t, s, jti, "", exp, false)
}

func testATFamily(t *testing.T, s store.Store) {
	now := Now()
	// A token of a family that was never created is not active.
	orphan, nofam := Secret(t), Secret(t)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: orphan, ClientID: clientA, Family: nofam, ExpiresAt: now.Add(time.Minute)}, now))
	wantActive(t, s, orphan, nofam, now, false)
	wantActive(t, s, orphan, "", now, false)

	f := NewFamily(t, s, now)
	g := NewFamily(t, s, now)
	// Recorded outside a rotation, into an existing family.
	jti, jtiG := Secret(t), Secret(t)
	late := f.Expires.Add(-time.Minute)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jti, ClientID: clientA, Family: f.Family, ExpiresAt: late.Add(time.Hour)}, late))
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jtiG, ClientID: clientA, Family: g.Family, ExpiresAt: late.Add(time.Hour)}, late))
	// After the family's absolute expiry its access tokens live to their own exp.
	after := f.Expires.Add(30 * time.Minute)
	wantActive(t, s, jti, f.Family, after, true)
	// Revoking the family kills its access tokens, even then.
	must(t, s.RevokeFamily(ctx(t), g.Family, after))
	wantActive(t, s, jtiG, g.Family, after, false)
	wantActive(t, s, jti, f.Family, after, true)
	wantActive(t, s, jti, f.Family, late.Add(time.Hour), false)
}

func testATRevoke(t *testing.T, s store.Store) {
	now := Now()
	jti := Secret(t)
	exp := now.Add(15 * time.Minute)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jti, ClientID: clientA, ExpiresAt: exp}, now))
	wantErr(t, s.RevokeAccessToken(ctx(t), jti, "", clientB, now), store.ErrClientMismatch)
	wantActive(t, s, jti, "", now, true)
	wantErr(t, s.RevokeAccessToken(ctx(t), Secret(t), "", clientA, now), store.ErrNotFound)
	wantErr(t, s.RevokeAccessToken(ctx(t), jti, Secret(t), clientA, now), store.ErrNotFound)
	must(t, s.RevokeAccessToken(ctx(t), jti, "", clientA, now))
	wantActive(t, s, jti, "", now, false)
	must(t, s.RevokeAccessToken(ctx(t), jti, "", clientA, now))
	// Re-recording a revoked token does not revive it.
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: jti, ClientID: clientA, ExpiresAt: exp}, now))
	wantActive(t, s, jti, "", now, false)

	f := NewFamily(t, s, now)
	wantErr(t, s.RevokeAccessToken(ctx(t), f.JTI, f.Family, clientB, now), store.ErrClientMismatch)
	must(t, s.RevokeAccessToken(ctx(t), f.JTI, f.Family, clientA, now))
	wantActive(t, s, f.JTI, f.Family, now, false)
	// Revoking one access token leaves the family alone.
	wantLive(t, s, f, f.Refresh, now)

	wantErr(t, s.RevokeAccessToken(ctx(t), jti, "", clientA, exp), store.ErrNotFound)
}

func testATRecordTwice(t *testing.T, s store.Store) {
	now := Now()
	r := store.AccessTokenRecord{JTI: Secret(t), ClientID: clientA, ExpiresAt: now.Add(time.Minute)}
	must(t, s.RecordAccessToken(ctx(t), r, now))
	must(t, s.RecordAccessToken(ctx(t), r, now))
	other := r
	other.ClientID = clientB
	if err := s.RecordAccessToken(ctx(t), other, now); err == nil {
		t.Fatal("recording a different token under a live jti succeeded")
	}
	wantErr(t, s.RevokeAccessToken(ctx(t), r.JTI, "", clientB, now), store.ErrClientMismatch)
}

// --- assertions ---

func testAssertion(t *testing.T, s store.Store) {
	now := Now()
	jti := Secret(t)
	exp := now.Add(5 * time.Minute)
	must(t, s.UseAssertion(ctx(t), clientA, jti, exp, now))
	// Another client's jti space is its own.
	must(t, s.UseAssertion(ctx(t), clientB, jti, exp, now))
	wantErr(t, s.UseAssertion(ctx(t), clientA, jti, exp, now.Add(time.Minute)), store.ErrReplay)
	// Once the assertion has expired the jti is forgotten (bounded memory, case 51).
	must(t, s.UseAssertion(ctx(t), clientA, jti, exp.Add(time.Minute), exp))
}

func testAssertionConcurrent(t *testing.T, s store.Store) {
	now := Now()
	jti := Secret(t)
	errs := concurrently(func(int) error {
		return s.UseAssertion(context.Background(), clientA, jti, now.Add(time.Minute), now)
	})
	if n := countNil(t, errs, store.ErrReplay); n != 1 {
		t.Fatalf("%d uses succeeded, want exactly 1", n)
	}
}

// --- sessions ---

func testSessionIdle(t *testing.T, s store.Store) {
	now := Now()
	id := store.Hash(Secret(t))
	idle := 30 * time.Minute
	want := store.Session{Subject: "alice", AuthTime: now, ExpiresAt: now.Add(12 * time.Hour)}
	must(t, s.CreateSession(ctx(t), id, want, idle, now))
	_, err := s.GetSession(ctx(t), store.Hash(Secret(t)), idle, now)
	wantErr(t, err, store.ErrNotFound)
	at := now
	for range 5 { // each use restarts the idle timer
		at = at.Add(idle - time.Second)
		got, err := s.GetSession(ctx(t), id, idle, at)
		must(t, err)
		if got != want {
			t.Fatalf("GetSession = %+v, want %+v", got, want)
		}
	}
	_, err = s.GetSession(ctx(t), id, idle, at.Add(idle))
	wantErr(t, err, store.ErrNotFound)
}

func testSessionAbsolute(t *testing.T, s store.Store) {
	now := Now()
	id := store.Hash(Secret(t))
	idle := time.Hour
	must(t, s.CreateSession(ctx(t), id, store.Session{Subject: "alice", ExpiresAt: now.Add(90 * time.Minute)}, idle, now))
	_, err := s.GetSession(ctx(t), id, idle, now.Add(59*time.Minute))
	must(t, err)
	_, err = s.GetSession(ctx(t), id, idle, now.Add(90*time.Minute))
	wantErr(t, err, store.ErrNotFound)
	// Creating again replaces it.
	must(t, s.CreateSession(ctx(t), id, store.Session{Subject: "bob", ExpiresAt: now.Add(3 * time.Hour)}, idle, now.Add(2*time.Hour)))
	got, err := s.GetSession(ctx(t), id, idle, now.Add(2*time.Hour))
	must(t, err)
	if got.Subject != "bob" {
		t.Fatalf("subject = %q, want bob", got.Subject)
	}
}

func testSessionDelete(t *testing.T, s store.Store) {
	now := Now()
	id := store.Hash(Secret(t))
	must(t, s.CreateSession(ctx(t), id, store.Session{Subject: "alice", ExpiresAt: now.Add(time.Hour)}, time.Hour, now))
	must(t, s.DeleteSession(ctx(t), id))
	must(t, s.DeleteSession(ctx(t), id))
	_, err := s.GetSession(ctx(t), id, time.Hour, now)
	wantErr(t, err, store.ErrNotFound)
}

// --- authorization requests ---

func testAuthRequest(t *testing.T, s store.Store) {
	now := Now()
	id := store.Hash(Secret(t))
	exp := now.Add(10 * time.Minute)
	must(t, s.PutAuthRequest(ctx(t), id, []byte("first\n\x00binary"), exp, now))
	must(t, s.PutAuthRequest(ctx(t), id, []byte("second\n\x00binary"), exp, now))
	for range 2 {
		got, err := s.GetAuthRequest(ctx(t), id, now)
		must(t, err)
		if string(got) != "second\n\x00binary" {
			t.Fatalf("GetAuthRequest = %q", got)
		}
	}
	got, err := s.TakeAuthRequest(ctx(t), id, now)
	must(t, err)
	if string(got) != "second\n\x00binary" {
		t.Fatalf("TakeAuthRequest = %q", got)
	}
	_, err = s.TakeAuthRequest(ctx(t), id, now)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetAuthRequest(ctx(t), id, now)
	wantErr(t, err, store.ErrNotFound)

	// Empty values are values.
	must(t, s.PutAuthRequest(ctx(t), id, nil, exp, now))
	got, err = s.TakeAuthRequest(ctx(t), id, now)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("TakeAuthRequest = %q, want empty", got)
	}
	// An expired request can be neither read nor taken, and a request put already expired
	// replaces the old one with nothing.
	must(t, s.PutAuthRequest(ctx(t), id, []byte("x"), exp, now))
	_, err = s.GetAuthRequest(ctx(t), id, exp)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.TakeAuthRequest(ctx(t), id, exp)
	wantErr(t, err, store.ErrNotFound)
	must(t, s.PutAuthRequest(ctx(t), id, []byte("y"), exp.Add(time.Hour), exp))
	must(t, s.PutAuthRequest(ctx(t), id, []byte("z"), exp, exp))
	_, err = s.GetAuthRequest(ctx(t), id, exp)
	wantErr(t, err, store.ErrNotFound)
}

func testAuthRequestConcurrent(t *testing.T, s store.Store) {
	now := Now()
	id := store.Hash(Secret(t))
	must(t, s.PutAuthRequest(ctx(t), id, []byte("req"), now.Add(time.Minute), now))
	errs := concurrently(func(int) error {
		_, err := s.TakeAuthRequest(context.Background(), id, now)
		return err
	})
	if n := countNil(t, errs, store.ErrNotFound); n != 1 {
		t.Fatalf("%d takes succeeded, want exactly 1", n)
	}
}

// --- consents ---

func testConsent(t *testing.T, s store.Store) {
	now := Now()
	exp := now.Add(30 * 24 * time.Hour)
	has := func(at time.Time, client string, scopes ...string) bool {
		t.Helper()
		ok, err := s.HasConsent(ctx(t), "alice", client, scopes, at)
		must(t, err)
		return ok
	}
	if has(now, clientA, "openid") || has(now, clientA) {
		t.Fatal("consent before any was saved")
	}
	must(t, s.SaveConsent(ctx(t), "alice", clientA, []string{"openid", "profile"}, exp, now))
	for _, c := range []struct {
		scopes []string
		want   bool
	}{
		{[]string{"openid"}, true},
		{[]string{"profile", "openid"}, true},
		{[]string{"openid", "orders.read"}, false},
		{[]string{"orders.read"}, false},
		{nil, true},
	} {
		if got := has(now, clientA, c.scopes...); got != c.want {
			t.Fatalf("HasConsent(%v) = %v, want %v", c.scopes, got, c.want)
		}
	}
	if has(now, clientB, "openid") {
		t.Fatal("consent leaked to another client")
	}
	if ok, err := s.HasConsent(ctx(t), "bob", clientA, []string{"openid"}, now); err != nil || ok {
		t.Fatalf("consent leaked to another subject: %v %v", ok, err)
	}
	// Consents add up; each scope keeps the expiry of its latest decision.
	must(t, s.SaveConsent(ctx(t), "alice", clientA, []string{"orders.read"}, exp.Add(time.Hour), now))
	if !has(now, clientA, "openid", "orders.read", "profile") {
		t.Fatal("saved scopes do not add up")
	}
	if has(exp, clientA, "openid") || !has(exp, clientA, "orders.read") {
		t.Fatal("per-scope expiry not kept")
	}
	if has(exp.Add(time.Hour), clientA) {
		t.Fatal("consent outlived every scope")
	}
	must(t, s.RevokeConsent(ctx(t), "alice", clientA))
	must(t, s.RevokeConsent(ctx(t), "alice", clientA))
	if has(now, clientA, "openid") {
		t.Fatal("consent survived revocation")
	}
}

// --- limiter ---

func testLimiter(t *testing.T, s store.Store) {
	window := time.Minute
	now := Now().Truncate(window).Add(10 * time.Second)
	end := now.Truncate(window).Add(window)
	for i := int64(1); i <= 3; i++ {
		n, reset, err := s.Hit(ctx(t), "login:alice", 1, window, now)
		must(t, err)
		if n != i || !reset.Equal(end) {
			t.Fatalf("Hit = %d, %v; want %d, %v", n, reset, i, end)
		}
	}
	n, _, err := s.Hit(ctx(t), "login:alice", 0, window, now.Add(40*time.Second))
	must(t, err)
	if n != 3 {
		t.Fatalf("read = %d, want 3", n)
	}
	n, _, err = s.Hit(ctx(t), "login:alice", 5, window, now)
	must(t, err)
	if n != 8 {
		t.Fatalf("Hit 5 = %d, want 8", n)
	}
	n, _, err = s.Hit(ctx(t), "login:bob", 0, window, now)
	must(t, err)
	if n != 0 {
		t.Fatalf("other key = %d, want 0", n)
	}
	// The next window starts from zero.
	n, reset, err := s.Hit(ctx(t), "login:alice", 1, window, end)
	must(t, err)
	if n != 1 || !reset.Equal(end.Add(window)) {
		t.Fatalf("next window Hit = %d, %v; want 1, %v", n, reset, end.Add(window))
	}
	if _, _, err := s.Hit(ctx(t), "k", -1, window, now); err == nil {
		t.Fatal("negative hit accepted")
	}
	if _, _, err := s.Hit(ctx(t), "k", 1, 0, now); err == nil {
		t.Fatal("zero window accepted")
	}
}

// Case 48: 50 concurrent failures count as 50.
func testLimiterConcurrent(t *testing.T, s store.Store) {
	window := time.Minute
	now := Now().Truncate(window)
	key := "client:" + Secret(t)
	errs := concurrently(func(i int) error {
		if i >= 50 {
			return nil
		}
		_, _, err := s.Hit(context.Background(), key, 1, window, now)
		return err
	})
	countNil(t, errs)
	n, _, err := s.Hit(ctx(t), key, 0, window, now.Add(window-time.Millisecond))
	must(t, err)
	if n != 50 {
		t.Fatalf("count = %d, want 50", n)
	}
	n, _, err = s.Hit(ctx(t), key, 0, window, now.Add(window))
	must(t, err)
	if n != 0 {
		t.Fatalf("count in the next window = %d, want 0", n)
	}
}

// A group's counters count in their own windows, apart from each other, from other groups and
// from Hit's counters.
func testLimiterGroup(t *testing.T, s store.Store) {
	minute, fiveMin := time.Minute, 5*time.Minute
	now := Now().Truncate(fiveMin).Add(10 * time.Second)
	group := "client:" + Secret(t)
	hits := func(at time.Time, reqs, fails int64) []store.LimitCount {
		t.Helper()
		got, err := s.HitGroup(ctx(t), group, []store.LimitHit{
			{Name: "token", N: reqs, Window: minute},
			{Name: "authfail", N: fails, Window: fiveMin},
		}, at)
		must(t, err)
		if len(got) != 2 {
			t.Fatalf("HitGroup returned %d counts, want 2", len(got))
		}
		return got
	}
	got := hits(now, 0, 0)
	if got[0].Count != 0 || got[1].Count != 0 {
		t.Fatalf("fresh group = %+v, want zeros", got)
	}
	if !got[0].ResetAt.Equal(now.Truncate(minute).Add(minute)) || !got[1].ResetAt.Equal(now.Truncate(fiveMin).Add(fiveMin)) {
		t.Fatalf("reset times = %v, %v", got[0].ResetAt, got[1].ResetAt)
	}
	for i := int64(1); i <= 3; i++ {
		got = hits(now, 1, 0)
		if got[0].Count != i || got[1].Count != 0 {
			t.Fatalf("hit %d = %+v", i, got)
		}
	}
	got = hits(now, 0, 2)
	if got[0].Count != 3 || got[1].Count != 2 {
		t.Fatalf("after failures = %+v, want 3, 2", got)
	}
	// A minute later the request counter starts again; the failure window has not ended.
	got = hits(now.Add(minute), 1, 0)
	if got[0].Count != 1 || got[1].Count != 2 {
		t.Fatalf("next minute = %+v, want 1, 2", got)
	}
	// Other groups, and Hit with the same strings, see none of it.
	other, err := s.HitGroup(ctx(t), group+"x", []store.LimitHit{{Name: "token", Window: minute}}, now)
	must(t, err)
	if other[0].Count != 0 {
		t.Fatalf("other group = %d, want 0", other[0].Count)
	}
	for _, key := range []string{group, "token", group + ":token", group + "}:token"} {
		n, _, err := s.Hit(ctx(t), key, 0, minute, now)
		must(t, err)
		if n != 0 {
			t.Fatalf("Hit(%q) = %d, want 0", key, n)
		}
	}
	if _, err := s.HitGroup(ctx(t), group, nil, now); err == nil {
		t.Fatal("empty group hit accepted")
	}
	if _, err := s.HitGroup(ctx(t), group, []store.LimitHit{{Name: "a", N: -1, Window: minute}}, now); err == nil {
		t.Fatal("negative hit accepted")
	}
	if _, err := s.HitGroup(ctx(t), group, []store.LimitHit{{Name: "a", N: 1}}, now); err == nil {
		t.Fatal("zero window accepted")
	}
}

// Case 48 again, through HitGroup: a burst of concurrent callers that each read one counter and
// add to another is counted exactly.
func testLimiterGroupConcurrent(t *testing.T, s store.Store) {
	const n = 50
	window := time.Minute
	now := Now().Truncate(window)
	group := "client:" + Secret(t)
	errs := concurrently(func(i int) error {
		if i >= n {
			return nil
		}
		_, err := s.HitGroup(context.Background(), group, []store.LimitHit{
			{Name: "authfail", N: 0, Window: window},
			{Name: "token", N: 1, Window: window},
		}, now)
		return err
	})
	countNil(t, errs)
	got, err := s.HitGroup(ctx(t), group, []store.LimitHit{
		{Name: "token", Window: window},
		{Name: "authfail", Window: window},
	}, now.Add(window-time.Millisecond))
	must(t, err)
	if got[0].Count != n || got[1].Count != 0 {
		t.Fatalf("counts = %d, %d; want %d, 0", got[0].Count, got[1].Count, n)
	}
}

// RecordAccessTokenAndHit (optional; both stores have it) records the token and counts, and
// concurrent calls count exactly.
func testRecordAndHit(t *testing.T, s store.Store) {
	rh, ok := s.(store.RecordAndHitter)
	if !ok {
		return // optional: the server falls back to RecordAccessToken and HitGroup
	}
	const n = 50
	window := time.Minute
	now := Now().Truncate(window)
	group := "client:" + Secret(t)
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = Secret(t)
	}
	errs := concurrently(func(i int) error {
		if i >= n {
			return nil
		}
		_, hitErr, recErr := rh.RecordAccessTokenAndHit(context.Background(),
			store.AccessTokenRecord{JTI: jtis[i], ClientID: clientA, ExpiresAt: now.Add(time.Hour)}, group,
			[]store.LimitHit{{Name: "authfail", Window: window}, {Name: "token", N: 1, Window: window}}, now)
		return errors.Join(hitErr, recErr)
	})
	countNil(t, errs)
	for _, jti := range jtis {
		wantActive(t, s, jti, "", now, true)
	}
	counts, hitErr, recErr := rh.RecordAccessTokenAndHit(ctx(t),
		store.AccessTokenRecord{JTI: Secret(t), ClientID: clientA, ExpiresAt: now.Add(time.Hour)}, group,
		[]store.LimitHit{{Name: "authfail", Window: window}, {Name: "token", N: 1, Window: window}}, now)
	must(t, hitErr)
	must(t, recErr)
	if len(counts) != 2 || counts[0].Count != 0 || counts[1].Count != n+1 || !counts[1].ResetAt.Equal(now.Add(window)) {
		t.Fatalf("counts = %+v, want 0 and %d", counts, n+1)
	}
	if _, hitErr, _ := rh.RecordAccessTokenAndHit(ctx(t),
		store.AccessTokenRecord{JTI: Secret(t), ClientID: clientA, ExpiresAt: now.Add(time.Hour)}, group, nil, now); hitErr == nil {
		t.Fatal("empty hits accepted")
	}
}

// Identifiers are opaque: separators and braces in them must neither merge two records nor
// split one (a Redis key built from them must not change slot or collide).
func testOddIDs(t *testing.T, s store.Store) {
	now := Now()
	exp := now.Add(time.Hour)
	must(t, s.SaveConsent(ctx(t), "a}:c:x", "y", []string{"openid"}, exp, now))
	for _, p := range [][2]string{{"a", "x}:c:y"}, {"a", "x"}, {"a}:c:x", "y "}, {"", "y"}} {
		ok, err := s.HasConsent(ctx(t), p[0], p[1], []string{"openid"}, now)
		must(t, err)
		if ok {
			t.Fatalf("consent of (%q, %q) visible as (%q, %q)", "a}:c:x", "y", p[0], p[1])
		}
	}
	must(t, s.UseAssertion(ctx(t), "c:1", "j", exp, now))
	must(t, s.UseAssertion(ctx(t), "c", "1:j", exp, now))
	wantErr(t, s.UseAssertion(ctx(t), "c:1", "j", exp, now), store.ErrReplay)

	fam := "{fam}:" + Secret(t)
	c := store.Code{Grant: testGrant(now), CodeChallenge: "ch", ExpiresAt: now.Add(codeLife)}
	must(t, s.CreateCode(ctx(t), fam, "h{1}", c, now))
	_, err := s.GetCode(ctx(t), fam, "h{1}", now)
	must(t, err)
	_, err = s.RedeemCode(ctx(t), fam, "h{1}", store.FamilyParams{
		RefreshHash: "r:1", ExpiresAt: exp, IdleLifetime: time.Hour,
		AccessToken: store.AccessTokenRecord{JTI: "j}{", ClientID: clientA, ExpiresAt: exp},
	}, now)
	must(t, err)
	_, err = s.LookupRefresh(ctx(t), fam, "r:1", now)
	must(t, err)
	wantActive(t, s, "j}{", fam, now, true)
	must(t, s.RecordAccessToken(ctx(t), store.AccessTokenRecord{JTI: "j}{", ClientID: clientA, ExpiresAt: exp}, now))
	wantActive(t, s, "j}{", "", now, true)
}

// testGrantRoundTrips: every field of the grant survives the code, its redemption, a lookup
// and a rotation, so the server can re-check the grant on every refresh (SECURITY-CASES 40).
func testGrantRoundTrips(t *testing.T, s store.Store) {
	now := Now()
	f := NewCode(t, s, now)
	c, err := s.GetCode(ctx(t), f.Family, store.Hash(f.Code), now)
	must(t, err)
	if c.Grant != f.Grant {
		t.Fatalf("GetCode grant = %+v, want %+v", c.Grant, f.Grant)
	}
	fam, err := s.RedeemCode(ctx(t), f.Family, store.Hash(f.Code), f.Params(now), now)
	must(t, err)
	if fam.Grant != f.Grant {
		t.Fatalf("RedeemCode grant = %+v, want %+v", fam.Grant, f.Grant)
	}
	fam, err = s.LookupRefresh(ctx(t), f.Family, store.Hash(f.Refresh), now)
	must(t, err)
	if fam.Grant != f.Grant {
		t.Fatalf("LookupRefresh grant = %+v, want %+v", fam.Grant, f.Grant)
	}
	fam, _, _, err = f.Rotate(t, s, now.Add(time.Second), 0)
	must(t, err)
	if fam.Grant != f.Grant {
		t.Fatalf("RotateRefresh grant = %+v, want %+v", fam.Grant, f.Grant)
	}
}

// testRotateMaxGenerations: a family that has rotated MaxGenerations times is revoked by the
// next rotation, which bounds the record of used hashes a family keeps.
func testRotateMaxGenerations(t *testing.T, s store.Store) {
	now := Now()
	f := NewFamily(t, s, now) // generation 1
	rotate := func(at time.Time) (store.Family, error) {
		next := Secret(t)
		fam, err := s.RotateRefresh(ctx(t), store.RotateParams{
			Family: f.Family, PresentedHash: store.Hash(f.Refresh), NewHash: store.Hash(next),
			ClientID: clientA, IdleLifetime: f.Idle, MaxGenerations: 3,
		}, at)
		if err == nil {
			f.Refresh = next
		}
		return fam, err
	}
	for g := int64(2); g <= 3; g++ {
		fam, err := rotate(now.Add(time.Duration(g) * time.Second))
		must(t, err)
		if fam.Generation != g {
			t.Fatalf("generation %d, want %d", fam.Generation, g)
		}
	}
	_, err := rotate(now.Add(10 * time.Second))
	wantErr(t, err, store.ErrRevoked)
	wantActive(t, s, f.JTI, f.Family, now.Add(10*time.Second), false)
	if _, err := s.LookupRefresh(ctx(t), f.Family, store.Hash(f.Refresh), now.Add(10*time.Second)); err == nil {
		t.Fatal("the live token of a family past its cap is still found")
	}
}
