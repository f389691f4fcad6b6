package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
)

// RecordAccessToken records r in its family's slot, or in its own for a client-credentials
// token. Recording the same record again is a no-op; a different live record under the same
// jti is an error.
func (s *Store) RecordAccessToken(ctx context.Context, r store.AccessTokenRecord, now time.Time) error {
	const op = "record access token"
	reply, err := s.run(ctx, scriptRecordAT, []string{s.atKey(r.JTI, r.Family)},
		msArg(now), msArg(r.ExpiresAt), r.ClientID).Slice()
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// AccessTokenActive checks the record and, for a family token, the family, in one script.
func (s *Store) AccessTokenActive(ctx context.Context, jti, family string, now time.Time) (bool, error) {
	const op = "check access token"
	keys := []string{s.atKey(jti, family)}
	if family != "" {
		keys = append(keys, s.famKey(family))
	}
	n, err := s.run(ctx, scriptATActive, keys, msArg(now)).Int64()
	if err != nil {
		return false, wrap(op, err)
	}
	return n == 1, nil
}

// RevokeAccessToken marks the record revoked, keeping its TTL (RFC 7009 §2.1).
func (s *Store) RevokeAccessToken(ctx context.Context, jti, family, clientID string, now time.Time) error {
	const op = "revoke access token"
	reply, err := s.runDurable(ctx, op, scriptRevokeAT, []string{s.atKey(jti, family)}, msArg(now), clientID)
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// UseAssertion records a client-assertion jti until the assertion expires (RFC 7523 §3 item 7,
// case 51); the record's TTL bounds the memory.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expiresAt, now time.Time) error {
	const op = "use client assertion"
	reply, err := s.run(ctx, scriptUseAssertion, []string{s.assertionKey(clientID, jti)},
		msArg(now), msArg(expiresAt)).Slice()
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// CreateSession replaces whatever idHash held.
func (s *Store) CreateSession(ctx context.Context, idHash string, ss store.Session, idle time.Duration, now time.Time) error {
	const op = "create session"
	reply, err := s.run(ctx, scriptCreateSession, []string{s.sessionKey(idHash)},
		msArg(now), ss.Subject, authTimeArg(ss.AuthTime), msArg(ss.ExpiresAt), durArg(idle)).Slice()
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// GetSession returns a live session and restarts its idle timer in the same script.
func (s *Store) GetSession(ctx context.Context, idHash string, idle time.Duration, now time.Time) (store.Session, error) {
	const op = "get session"
	reply, err := s.run(ctx, scriptGetSession, []string{s.sessionKey(idHash)}, msArg(now), durArg(idle)).Slice()
	if err != nil {
		return store.Session{}, wrap(op, err)
	}
	if err := s.statusResult(op, reply, nil); err != nil {
		return store.Session{}, err
	}
	if len(reply) != 4 {
		return store.Session{}, fmt.Errorf("%s: session reply has %d elements", op, len(reply))
	}
	return store.Session{Subject: str(reply[1]), AuthTime: parseTime(reply[2]), ExpiresAt: parseTime(reply[3])}, nil
}

// DeleteSession deletes the session key.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	return wrap("delete session", s.rdb.Del(ctx, s.sessionKey(idHash)).Err())
}

// Pending authorization requests are strings "<expiry ms>\n<value>", so GETDEL takes one in a
// single atomic command.

// PutAuthRequest stores the request, or deletes it when it has already expired.
func (s *Store) PutAuthRequest(ctx context.Context, idHash string, value []byte, expiresAt, now time.Time) error {
	const op = "put authorization request"
	key := s.requestKey(idHash)
	if ms(expiresAt) <= ms(now) {
		return wrap(op, s.rdb.Del(ctx, key).Err())
	}
	v := make([]byte, 0, len(value)+16)
	v = strconv.AppendInt(v, ms(expiresAt), 10)
	v = append(v, '\n')
	v = append(v, value...)
	return wrap(op, s.rdb.Set(ctx, key, v, ttl(expiresAt, now)).Err())
}

// GetAuthRequest returns the stored value.
func (s *Store) GetAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	const op = "get authorization request"
	b, err := s.rdb.Get(ctx, s.requestKey(idHash)).Bytes()
	if err != nil {
		return nil, wrap(op, err)
	}
	return requestValue(op, b, now)
}

// TakeAuthRequest returns and deletes the request with GETDEL: exactly one caller gets it.
func (s *Store) TakeAuthRequest(ctx context.Context, idHash string, now time.Time) ([]byte, error) {
	const op = "take authorization request"
	b, err := s.rdb.GetDel(ctx, s.requestKey(idHash)).Bytes()
	if err != nil {
		return nil, wrap(op, err)
	}
	return requestValue(op, b, now)
}

func requestValue(op string, b []byte, now time.Time) ([]byte, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, fmt.Errorf("%s: malformed record", op)
	}
	exp, err := strconv.ParseInt(string(b[:i]), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed record: %w", op, err)
	}
	if exp <= ms(now) {
		return nil, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	return b[i+1:], nil
}

// SaveConsent merges the scopes into the subject's consent for the client; the latest decision
// for a scope sets its expiry.
func (s *Store) SaveConsent(ctx context.Context, subject, clientID string, scopes []string, expiresAt, now time.Time) error {
	const op = "save consent"
	args := make([]any, 0, len(scopes)+2)
	args = append(args, msArg(now), msArg(expiresAt))
	for _, sc := range scopes {
		args = append(args, sc)
	}
	reply, err := s.run(ctx, scriptSaveConsent, []string{s.consentKey(subject, clientID)}, args...).Slice()
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// HasConsent reports whether every scope was allowed and has not expired. With no scopes it
// reports whether any unexpired consent exists for the pair.
func (s *Store) HasConsent(ctx context.Context, subject, clientID string, scopes []string, now time.Time) (bool, error) {
	all, err := s.rdb.HGetAll(ctx, s.consentKey(subject, clientID)).Result()
	if err != nil {
		return false, wrap("check consent", err)
	}
	n := ms(now)
	live := func(v string) bool {
		e, err := strconv.ParseInt(v, 10, 64)
		return err == nil && e > n
	}
	if len(scopes) == 0 {
		for _, v := range all {
			if live(v) {
				return true, nil
			}
		}
		return false, nil
	}
	for _, sc := range scopes {
		v, ok := all[sc]
		if !ok || !live(v) {
			return false, nil
		}
	}
	return true, nil
}

// RevokeConsent deletes the pair's consent.
func (s *Store) RevokeConsent(ctx context.Context, subject, clientID string) error {
	return wrap("revoke consent", s.rdb.Del(ctx, s.consentKey(subject, clientID)).Err())
}

// Hit counts in fixed windows aligned to the Unix epoch; each window is its own key, so a new
// window starts from zero without a reset step. INCRBY is atomic, so concurrent hits are all
// counted (case 48).
func (s *Store) Hit(ctx context.Context, key string, n int64, window time.Duration, now time.Time) (int64, time.Time, error) {
	const op = "count rate limit hit"
	if window < time.Millisecond || n < 0 {
		return 0, time.Time{}, fmt.Errorf("%s: window %v or count %d out of range", op, window, n)
	}
	w := window.Milliseconds()
	start := floorDiv(ms(now), w) * w
	resetAt := time.UnixMilli(start + w).UTC()
	count, err := s.run(ctx, scriptHit, []string{s.limitKey(key, start)},
		strconv.FormatInt(n, 10), strconv.FormatInt(ttl(resetAt, now).Milliseconds(), 10)).Int64()
	if err != nil {
		return 0, time.Time{}, wrap(op, err)
	}
	return count, resetAt, nil
}

// HitGroup counts like Hit, for several counters of one group in one script: the group is the
// hash tag, so the script touches one slot and costs one round trip.
func (s *Store) HitGroup(ctx context.Context, group string, hits []store.LimitHit, now time.Time) ([]store.LimitCount, error) {
	keys, args, out, err := s.hitGroupArgs(group, hits, now)
	if err != nil {
		return nil, err
	}
	return hitGroupResult(out, s.run(ctx, scriptHitGroup, keys, args...))
}

// RecordAccessTokenAndHit sends RecordAccessToken's and HitGroup's scripts together, so the
// client-credentials path pays one round trip for recording its token and for the client's
// rate limit (store.RecordAndHitter). The keys are in different slots; a pipeline may span
// slots, each script still touches one.
func (s *Store) RecordAccessTokenAndHit(ctx context.Context, r store.AccessTokenRecord, group string, hits []store.LimitHit, now time.Time) ([]store.LimitCount, error, error) {
	keys, args, out, err := s.hitGroupArgs(group, hits, now)
	if err != nil {
		return nil, err, nil
	}
	cmds := s.runTogether(ctx, []script{
		{scriptRecordAT, []string{s.atKey(r.JTI, r.Family)}, []any{msArg(now), msArg(r.ExpiresAt), r.ClientID}},
		{scriptHitGroup, keys, args},
	})
	counts, hitErr := hitGroupResult(out, cmds[1])
	reply, err := cmds[0].Slice()
	if err != nil {
		return counts, hitErr, wrap("record access token", err)
	}
	return counts, hitErr, s.statusResult("record access token", reply, nil)
}

const opHitGroup = "count rate limit hits"

// hitGroupArgs builds HitGroup's keys and arguments, and its result with the reset times.
func (s *Store) hitGroupArgs(group string, hits []store.LimitHit, now time.Time) ([]string, []any, []store.LimitCount, error) {
	if len(hits) == 0 {
		return nil, nil, nil, fmt.Errorf("%s: no counters", opHitGroup)
	}
	keys := make([]string, len(hits))
	args := make([]any, 0, 2*len(hits))
	out := make([]store.LimitCount, len(hits))
	for i, h := range hits {
		if h.Window < time.Millisecond || h.N < 0 {
			return nil, nil, nil, fmt.Errorf("%s: window %v or count %d out of range", opHitGroup, h.Window, h.N)
		}
		w := h.Window.Milliseconds()
		start := floorDiv(ms(now), w) * w
		out[i].ResetAt = time.UnixMilli(start + w).UTC()
		keys[i] = s.groupKey(group, h.Name, start)
		args = append(args, strconv.FormatInt(h.N, 10), strconv.FormatInt(ttl(out[i].ResetAt, now).Milliseconds(), 10))
	}
	return keys, args, out, nil
}

// hitGroupResult fills out with the counts of HitGroup's reply.
func hitGroupResult(out []store.LimitCount, cmd *redis.Cmd) ([]store.LimitCount, error) {
	counts, err := cmd.Int64Slice()
	if err != nil {
		return nil, wrap(opHitGroup, err)
	}
	if len(counts) != len(out) {
		return nil, fmt.Errorf("%s: %d counts for %d counters", opHitGroup, len(counts), len(out))
	}
	for i, c := range counts {
		out[i].Count = c
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

// ttl is the garbage-collection TTL of a record valid until deadline.
func ttl(deadline, now time.Time) time.Duration {
	d := time.Duration(ms(deadline)-ms(now)) * time.Millisecond
	return max(d, retention.MinKeyTTL)
}
