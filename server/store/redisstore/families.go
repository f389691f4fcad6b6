package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/latchkey-dev/latchkey/server/store"
	"github.com/latchkey-dev/latchkey/server/store/internal/retention"
)

// CreateCode stores a code in the slot of the family it will create. Storing the same code
// again (a retried call: same client and challenge) changes nothing; another code under the
// same hash, or a code for a family that exists, is an error: codes and family ids are random,
// so it can only be a bug.
func (s *Store) CreateCode(ctx context.Context, family, codeHash string, c store.Code, now time.Time) error {
	const op = "create authorization code"
	reply, err := s.run(ctx, scriptCreateCode,
		[]string{s.codeKey(family, codeHash), s.famKey(family)},
		msArg(now), c.ClientID, c.Subject, c.Scope, authTimeArg(c.AuthTime), c.Nonce, c.RedirectURI,
		c.CodeChallenge, msArg(c.ExpiresAt), c.Audience).Slice()
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// GetCode reads the code without changing it (one HMGET), so a wrong verifier, client or
// redirect URI does not burn it (D2).
func (s *Store) GetCode(ctx context.Context, family, codeHash string, now time.Time) (store.Code, error) {
	const op = "get authorization code"
	v, err := s.rdb.HMGet(ctx, s.codeKey(family, codeHash),
		"c", "s", "sc", "at", "n", "ru", "ch", "ex", "rd", "tb", "au").Result()
	if err != nil {
		return store.Code{}, wrap(op, err)
	}
	if v[0] == nil {
		return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	c := store.Code{
		Grant: store.Grant{
			ClientID: str(v[0]), Subject: str(v[1]), Scope: str(v[2]), AuthTime: parseTime(v[3]),
			Nonce: str(v[4]), RedirectURI: str(v[5]), Audience: str(v[10]),
		},
		CodeChallenge: str(v[6]),
		ExpiresAt:     parseTime(v[7]),
	}
	if str(v[8]) == "1" {
		if parseInt(v[9]) <= ms(now) {
			return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
		return c, fmt.Errorf("%s: %w", op, store.ErrCodeReused)
	}
	if ms(c.ExpiresAt) <= ms(now) {
		return store.Code{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	return c, nil
}

// RedeemCode burns the code, creates the family and records the first access token in one
// script (D2, case 22, 23).
func (s *Store) RedeemCode(ctx context.Context, family, codeHash string, p store.FamilyParams, now time.Time) (store.Family, error) {
	const op = "redeem authorization code"
	at := p.AccessToken
	if at.Family != "" && at.Family != family {
		return store.Family{}, fmt.Errorf("%s: access token belongs to family %q, not %q", op, at.Family, family)
	}
	reply, err := s.runDurable(ctx, op, scriptRedeemCode,
		[]string{s.codeKey(family, codeHash), s.famKey(family), s.usedKey(family), s.atKey(at.JTI, family)},
		msArg(now), p.RefreshHash, msArg(p.ExpiresAt), durArg(p.IdleLifetime),
		at.JTI, at.ClientID, msArg(at.ExpiresAt),
		durArg(retention.CodeTombstone), durArg(retention.AccessTokenGrace))
	if err != nil {
		return store.Family{}, wrap(op, err)
	}
	return s.familyResult(op, family, reply, store.ErrCodeReused)
}

// RotateRefresh rotates in one script and one round trip (D1); see scriptRotate.
func (s *Store) RotateRefresh(ctx context.Context, p store.RotateParams, now time.Time) (store.Family, error) {
	const op = "rotate refresh token"
	at := p.AccessToken
	if at.Family != "" && at.Family != p.Family {
		return store.Family{}, fmt.Errorf("%s: access token belongs to family %q, not %q", op, at.Family, p.Family)
	}
	reply, err := s.runDurable(ctx, op, scriptRotate,
		[]string{s.famKey(p.Family), s.usedKey(p.Family), s.atKey(at.JTI, p.Family)},
		msArg(now), p.PresentedHash, p.NewHash, p.ClientID, durArg(p.IdleLifetime), durArg(p.ReuseInterval),
		at.JTI, at.ClientID, msArg(at.ExpiresAt), p.MaxGenerations)
	if err != nil {
		return store.Family{}, wrap(op, err)
	}
	return s.familyResult(op, p.Family, reply, store.ErrRefreshReused)
}

// LookupRefresh reads the family (one HMGET) and answers only for its live token.
func (s *Store) LookupRefresh(ctx context.Context, family, h string, now time.Time) (store.Family, error) {
	const op = "look up refresh token"
	v, err := s.rdb.HMGet(ctx, s.famKey(family),
		"c", "s", "sc", "at", "n", "ru", "ca", "ex", "g", "rv", "au", "gc", "cur", "ci").Result()
	if err != nil {
		return store.Family{}, wrap(op, err)
	}
	n := ms(now)
	if v[0] == nil || parseInt(v[11]) <= n || h == "" || str(v[12]) != h ||
		parseInt(v[13]) <= n || str(v[9]) != "0" || parseInt(v[7]) <= n {
		return store.Family{}, fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	return familyFrom(family, v[:11]), nil
}

// RevokeRefresh revokes the family when h is any token it ever held (RFC 7009 §2.1, case 42).
func (s *Store) RevokeRefresh(ctx context.Context, family, h, clientID string, now time.Time) error {
	const op = "revoke refresh token"
	reply, err := s.runDurable(ctx, op, scriptRevokeRefresh,
		[]string{s.famKey(family), s.usedKey(family)}, msArg(now), h, clientID)
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

// RevokeFamily marks the family revoked; its record stays until its TTL so its access tokens
// are judged inactive.
func (s *Store) RevokeFamily(ctx context.Context, family string, now time.Time) error {
	const op = "revoke family"
	reply, err := s.runDurable(ctx, op, scriptRevokeFamily, []string{s.famKey(family)}, msArg(now))
	if err != nil {
		return wrap(op, err)
	}
	return s.statusResult(op, reply, nil)
}

func (s *Store) statusResult(op string, reply []any, reuse error) error {
	st, err := status(reply)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := statusErr(st, reuse); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (s *Store) familyResult(op, family string, reply []any, reuse error) (store.Family, error) {
	if err := s.statusResult(op, reply, reuse); err != nil {
		return store.Family{}, err
	}
	if len(reply) != 12 {
		return store.Family{}, fmt.Errorf("%s: family reply has %d elements", op, len(reply))
	}
	return familyFrom(family, reply[1:]), nil
}

// familyFrom reads c, s, sc, at, n, ru, ca, ex, g, rv, au.
func familyFrom(id string, v []any) store.Family {
	return store.Family{
		ID: id,
		Grant: store.Grant{
			ClientID: str(v[0]), Subject: str(v[1]), Scope: str(v[2]), AuthTime: parseTime(v[3]),
			Nonce: str(v[4]), RedirectURI: str(v[5]), Audience: str(v[10]),
		},
		CreatedAt:  parseTime(v[6]),
		ExpiresAt:  parseTime(v[7]),
		Generation: parseInt(v[8]),
		Revoked:    str(v[9]) == "1",
	}
}
