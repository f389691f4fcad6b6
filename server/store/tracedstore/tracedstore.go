// Package tracedstore wraps any store.Store so that each call is an OpenTelemetry span named
// "store.<Method>" (store.RotateRefresh, store.RecordAccessToken, ...), a child of the request's
// span. The server wraps its store with it when tracing is on (server.Options.Tracing).
//
// A span carries the client id when the call names one, and latchkey.outcome: "ok" or the class
// of the store error ("not_found", "revoked", "refresh_reused", ...). Only "unavailable" and
// unclassified errors mark the span as failed; the others are answers the protocol expects.
// Nothing else of the arguments is recorded: code, refresh-token, session and request hashes,
// family ids, jtis, subjects and rate-limit keys stay out of traces.
//
// Store embeds the wrapped store, so a method added to the store interfaces later is passed
// through, untraced, until it is added here.
package tracedstore

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchkey-dev/latchkey/internal/telemetry/spans"
	"github.com/latchkey-dev/latchkey/server/store"
)

// tracer is the global provider's tracer for this package (spans.Tracer).
var tracer = spans.Tracer("github.com/latchkey-dev/latchkey/server/store/tracedstore")

// Store is a store.Store whose calls are spans. Build it with New.
type Store struct {
	store.Store
}

var _ store.Store = (*Store)(nil)

// New wraps inner. Wrapping a *Store again returns it unchanged.
func New(inner store.Store) *Store {
	if s, ok := inner.(*Store); ok {
		return s
	}
	return &Store{Store: inner}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.Store }

// Outcome classifies a store error for the latchkey.outcome attribute, and says whether it is a
// failure (the backend, or a bug) rather than an answer.
func Outcome(err error) (outcome string, failed bool) {
	switch {
	case err == nil:
		return spans.OutcomeOK, false
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable", true
	case errors.Is(err, store.ErrNotFound):
		return "not_found", false
	case errors.Is(err, store.ErrCodeReused):
		return "code_reused", false
	case errors.Is(err, store.ErrRefreshReused):
		return "refresh_reused", false
	case errors.Is(err, store.ErrRevoked):
		return "revoked", false
	case errors.Is(err, store.ErrClientMismatch):
		return "client_mismatch", false
	case errors.Is(err, store.ErrReplay):
		return "replay", false
	default:
		return spans.OutcomeError, true
	}
}

// finish records the client id (when known) and the outcome of err, and ends span.
func finish(span trace.Span, clientID string, err error) {
	if !span.IsRecording() {
		return
	}
	if clientID != "" {
		span.SetAttributes(spans.ClientIDKey.String(clientID))
	}
	outcome, failed := Outcome(err)
	spans.End(span, outcome, failed)
}

// CreateCode implements store.Codes.
func (s *Store) CreateCode(ctx context.Context, family, codeHash string, c store.Code, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.CreateCode")
	err := s.Store.CreateCode(ctx, family, codeHash, c, now)
	finish(span, c.ClientID, err)
	return err
}

// GetCode implements store.Codes.
func (s *Store) GetCode(ctx context.Context, family, codeHash string, now time.Time) (store.Code, error) {
	ctx, span := spans.Start(ctx, tracer, "store.GetCode")
	c, err := s.Store.GetCode(ctx, family, codeHash, now)
	finish(span, c.ClientID, err)
	return c, err
}

// RedeemCode implements store.Codes.
func (s *Store) RedeemCode(ctx context.Context, family, codeHash string, p store.FamilyParams, now time.Time) (store.Family, error) {
	ctx, span := spans.Start(ctx, tracer, "store.RedeemCode")
	f, err := s.Store.RedeemCode(ctx, family, codeHash, p, now)
	clientID := f.ClientID
	if clientID == "" {
		clientID = p.AccessToken.ClientID
	}
	finish(span, clientID, err)
	return f, err
}

// RotateRefresh implements store.Families.
func (s *Store) RotateRefresh(ctx context.Context, p store.RotateParams, now time.Time) (store.Family, error) {
	ctx, span := spans.Start(ctx, tracer, "store.RotateRefresh")
	f, err := s.Store.RotateRefresh(ctx, p, now)
	finish(span, p.ClientID, err)
	return f, err
}

// LookupRefresh implements store.Families.
func (s *Store) LookupRefresh(ctx context.Context, family, h string, now time.Time) (store.Family, error) {
	ctx, span := spans.Start(ctx, tracer, "store.LookupRefresh")
	f, err := s.Store.LookupRefresh(ctx, family, h, now)
	finish(span, f.ClientID, err)
	return f, err
}

// RevokeRefresh implements store.Families.
func (s *Store) RevokeRefresh(ctx context.Context, family, h, clientID string, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.RevokeRefresh")
	err := s.Store.RevokeRefresh(ctx, family, h, clientID, now)
	finish(span, clientID, err)
	return err
}

// RevokeFamily implements store.Families.
func (s *Store) RevokeFamily(ctx context.Context, family string, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.RevokeFamily")
	err := s.Store.RevokeFamily(ctx, family, now)
	finish(span, "", err)
	return err
}

// RecordAccessToken implements store.AccessTokens.
func (s *Store) RecordAccessToken(ctx context.Context, r store.AccessTokenRecord, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.RecordAccessToken")
	err := s.Store.RecordAccessToken(ctx, r, now)
	finish(span, r.ClientID, err)
	return err
}

// AccessTokenActive implements store.AccessTokens. The answer is the latchkey.active attribute.
func (s *Store) AccessTokenActive(ctx context.Context, jti, family string, now time.Time) (bool, error) {
	ctx, span := spans.Start(ctx, tracer, "store.AccessTokenActive")
	active, err := s.Store.AccessTokenActive(ctx, jti, family, now)
	if err == nil && span.IsRecording() {
		span.SetAttributes(activeKey.Bool(active))
	}
	finish(span, "", err)
	return active, err
}

// RevokeAccessToken implements store.AccessTokens.
func (s *Store) RevokeAccessToken(ctx context.Context, jti, family, clientID string, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.RevokeAccessToken")
	err := s.Store.RevokeAccessToken(ctx, jti, family, clientID, now)
	finish(span, clientID, err)
	return err
}

// UseAssertion implements store.Assertions.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expiresAt, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.UseAssertion")
	err := s.Store.UseAssertion(ctx, clientID, jti, expiresAt, now)
	finish(span, clientID, err)
	return err
}

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, idHash string, sess store.Session, idle time.Duration, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.CreateSession")
	err := s.Store.CreateSession(ctx, idHash, sess, idle, now)
	finish(span, "", err)
	return err
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, idHash string, idle time.Duration, now time.Time) (store.Session, error) {
	ctx, span := spans.Start(ctx, tracer, "store.GetSession")
	sess, err := s.Store.GetSession(ctx, idHash, idle, now)
	finish(span, "", err)
	return sess, err
}

// DeleteSession implements store.Sessions.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	ctx, span := spans.Start(ctx, tracer, "store.DeleteSession")
	err := s.Store.DeleteSession(ctx, idHash)
	finish(span, "", err)
	return err
}

// PutAuthRequest implements store.AuthRequests.
func (s *Store) PutAuthRequest(ctx context.Context, idHash string, value []byte, expiresAt, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.PutAuthRequest")
	err := s.Store.PutAuthRequest(ctx, idHash, value, expiresAt, now)
	finish(span, "", err)
	return err
}

// GetAuthRequest implements store.AuthRequests.
func (s *Store) GetAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	ctx, span := spans.Start(ctx, tracer, "store.GetAuthRequest")
	b, err := s.Store.GetAuthRequest(ctx, idHash, now)
	finish(span, "", err)
	return b, err
}

// TakeAuthRequest implements store.AuthRequests.
func (s *Store) TakeAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	ctx, span := spans.Start(ctx, tracer, "store.TakeAuthRequest")
	b, err := s.Store.TakeAuthRequest(ctx, idHash, now)
	finish(span, "", err)
	return b, err
}

// SaveConsent implements store.Consents.
func (s *Store) SaveConsent(ctx context.Context, subject, clientID string, scopes []string, expiresAt, now time.Time) error {
	ctx, span := spans.Start(ctx, tracer, "store.SaveConsent")
	err := s.Store.SaveConsent(ctx, subject, clientID, scopes, expiresAt, now)
	finish(span, clientID, err)
	return err
}

// HasConsent implements store.Consents.
func (s *Store) HasConsent(ctx context.Context, subject, clientID string, scopes []string, now time.Time) (bool, error) {
	ctx, span := spans.Start(ctx, tracer, "store.HasConsent")
	ok, err := s.Store.HasConsent(ctx, subject, clientID, scopes, now)
	finish(span, clientID, err)
	return ok, err
}

// RevokeConsent implements store.Consents.
func (s *Store) RevokeConsent(ctx context.Context, subject, clientID string) error {
	ctx, span := spans.Start(ctx, tracer, "store.RevokeConsent")
	err := s.Store.RevokeConsent(ctx, subject, clientID)
	finish(span, clientID, err)
	return err
}

// Hit implements store.Limiter. The key names a user or an address, so it is not recorded.
func (s *Store) Hit(ctx context.Context, key string, n int64, window time.Duration, now time.Time) (int64, time.Time, error) {
	ctx, span := spans.Start(ctx, tracer, "store.Hit")
	count, reset, err := s.Store.Hit(ctx, key, n, window, now)
	finish(span, "", err)
	return count, reset, err
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	ctx, span := spans.Start(ctx, tracer, "store.Ping")
	err := s.Store.Ping(ctx)
	finish(span, "", err)
	return err
}

// activeKey is the answer of AccessTokenActive.
const activeKey = attribute.Key("latchkey.active")
