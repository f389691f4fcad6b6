// Package redisstore keeps the token server's state in Redis (standalone, Sentinel or Cluster,
// through one redis.UniversalClient), so any number of replicas serve behind one Service.
//
// # Key layout
//
// Every key starts with the prefix (default "lk:"). Each operation touches the keys of one hash
// tag only, so every script runs on Redis Cluster (DESIGN "State in Redis", case 81):
//
//	{f:<family>}:code:<codeHash>  hash    an authorization code; it lives in the slot of the
//	                                      family it will create. TTL: the code's expiry (60 s);
//	                                      once redeemed, a tombstone for retention.CodeTombstone.
//	{f:<family>}:fam              hash    the refresh-token family. TTL: its absolute expiry plus
//	                                      retention.AccessTokenGrace (1h), so its access tokens
//	                                      can still be judged.
//	{f:<family>}:used             hash    every used or replaced refresh-token hash -> the
//	                                      generation at which it stopped being live. TTL: the
//	                                      family's.
//	{f:<family>}:at:<jti>         string  an access token of the family. TTL: the token's exp.
//	{j:<jti>}:at                  string  a client-credentials access token. TTL: its exp.
//	{a:<client>:<jti>}            string  a used client-assertion jti. TTL: the assertion's exp.
//	{s:<idHash>}                  hash    a login session. TTL: min(idle deadline, absolute end).
//	{r:<idHash>}                  string  a pending authorization request. TTL: its expiry.
//	{u:<subject>}:c:<client>      hash    consented scope -> expiry. TTL: the latest expiry.
//	{l:<key>}:<windowStart>       string  a rate-limit counter. TTL: the end of its window.
//	{g:<group>}:<name>:<start>    string  a counter of a HitGroup group (one client's request
//	                                      and failure counters share a slot). TTL: as above.
//
// Variable parts are written as they are when they consist only of [A-Za-z0-9_.-] (hashes,
// family ids and jtis normally do), and as "=" followed by their unpadded base64url otherwise,
// so a subject or client id holding ':', '{' or '}' can neither move a key to another slot nor
// collide with another key.
//
// Only hashes of secrets are stored (callers pass store.Hash of codes, refresh tokens, session
// and request ids). Validity is always decided by deadlines stored in the records against the
// caller's clock (the store contract passes now in); TTLs only collect garbage.
//
// # Failures
//
// A backend failure (refused connection, timeout, exhausted pool, LOADING, CLUSTERDOWN,
// MASTERDOWN, READONLY after a failover, MOVED after too many redirects, a context deadline)
// is returned wrapping store.ErrUnavailable, with the cause joined, so the server answers 503.
// With WithWaitReplicas, so is a write that too few replicas acknowledged (decision D5).
// A key of the wrong type (corrupt state) is a plain error: the script has checked it before
// writing anything (case 82).
//
// While a Cluster slot is being migrated, Redis refuses a script whose keys are split between
// the two nodes or not created yet (TRYAGAIN), so token operations of the families in that slot
// answer ErrUnavailable until the migration ends; they never act on half a family (case 81).
//
// # Retries
//
// go-redis retries a command whose connection failed or timed out, possibly after the script
// has run on the server. The operations that decide a token's fate recognise a repeat of the
// same call and return the same result instead of treating it as reuse: RedeemCode by the
// access token's jti, RotateRefresh by the new refresh token's hash, CreateCode by the code's
// client and challenge; revocations and RecordAccessToken are idempotent anyway. A repeated
// Hit may count twice, which only throttles sooner; a repeated UseAssertion or
// TakeAuthRequest may answer ErrReplay or ErrNotFound, which fails safe.
//
// A new HTTP request is a new call: a client that retries a refresh after a 503 whose rotation
// had committed presents a used token, which is reuse (decision D1, SECURITY-CASES 34 and 77).
package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/server/store"
)

// DefaultPrefix is the key prefix unless WithPrefix says otherwise.
const DefaultPrefix = "lk:"

// Store implements store.Store on Redis. It is safe for concurrent use.
type Store struct {
	rdb         redis.UniversalClient
	prefix      string
	waitN       int
	waitTimeout time.Duration
	onWait      func(op string, acked, wanted int, err error)
	// batch pipelines the scripts of concurrent calls; nil runs each on its own.
	batch *batcher
}

var (
	_ store.Store           = (*Store)(nil)
	_ store.RecordAndHitter = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key (default "lk:"), so several installations can share
// one Redis. It must not contain '{' or '}', which would change the hash slot; New panics if it
// does.
func WithPrefix(prefix string) Option { return func(s *Store) { s.prefix = prefix } }

// WithWaitReplicas makes every write that decides a token's fate (code redemption, refresh
// rotation, revocations) wait, on the same connection, until n replicas have acknowledged it
// or timeout has passed (Redis WAIT), when n > 0; fewer acknowledgements than n make the call
// fail with store.ErrUnavailable (503 temporarily_unavailable). Decision D5.
//
// Why: Redis replicates asynchronously, so without it a Sentinel failover or a Cluster replica
// promotion can lose a write the store has already acknowledged: after the failover the
// rotated refresh token is live again and its successor unknown (the client that holds the
// successor must log in again, while whoever holds the old token can use it once more), and a
// revoked family or token can be live again. The window is the replication lag at the moment
// the master dies, normally below a millisecond to a few milliseconds, but unbounded while a
// replica is disconnected.
//
// Why a shortfall fails closed rather than being accepted: the write has happened on the
// master and is not undone, but the caller is not told it is durable when it is not. A
// revocation answered 503 is retried by its caller (revocation is idempotent) instead of being
// reported done and then lost; a rotation or redemption answered 503 hands out no token whose
// record may vanish at the next failover (DESIGN: never a token that was not recorded). If the
// master then fails over, the client's previous refresh token is the live one on the new
// master and its retry succeeds; if it does not, the retry is a reuse (within the client's
// reuseInterval it gets a successor, with reuseInterval 0 the family is revoked and the user
// logs in again, SECURITY-CASES 34). Accepting the shortfall instead would keep serving while
// replicas are gone, and silently reopen the window the option exists to close; an operator
// who prefers that leaves the option off. The price is availability: with fewer than n
// replicas connected every rotation, redemption and revocation answers 503, as with
// min-replicas-to-write on the master (which a deployment may set as well, to refuse writes
// altogether).
//
// WAIT still "does not make Redis a strongly consistent store"
// (https://redis.io/docs/latest/commands/WAIT/): a failover may promote a replica that did not
// acknowledge. timeout adds to the latency of every such write only while replicas lag.
func WithWaitReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) { s.waitN, s.waitTimeout = n, timeout }
}

// WithWaitObserver is called after each WAIT of WithWaitReplicas with the operation name, the
// number of replicas that acknowledged, the number wanted, and the WAIT error if any, so the
// server can count replication shortfalls in a metric.
func WithWaitObserver(f func(op string, acked, wanted int, err error)) Option {
	return func(s *Store) { s.onWait = f }
}

// New returns a Store on rdb. The client should come from ParseURL's options (or set equally
// short timeouts): the store adds no timeouts of its own beyond the caller's context.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: DefaultPrefix, batch: &batcher{rdb: rdb}}
	for _, o := range opts {
		o(s)
	}
	if strings.ContainsAny(s.prefix, "{}") {
		panic(fmt.Sprintf("redisstore: key prefix %q contains a brace", s.prefix))
	}
	return s
}

// Ping reports whether Redis answers: on a Cluster, every master must.
func (s *Store) Ping(ctx context.Context) error {
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.rdb.Ping(ctx).Err()
	}
	return wrap("ping redis", err)
}

// --- keys ---

// enc makes a variable part safe inside a key; see the package documentation.
func enc(v string) string {
	if v != "" && safe(v) {
		return v
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(v))
}

func safe(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func (s *Store) famTag(family string) string { return s.prefix + "{f:" + enc(family) + "}" }
func (s *Store) famKey(family string) string { return s.famTag(family) + ":fam" }
func (s *Store) usedKey(family string) string {
	return s.famTag(family) + ":used"
}
func (s *Store) codeKey(family, codeHash string) string {
	return s.famTag(family) + ":code:" + enc(codeHash)
}

// atKey is the record of an access token: in its family's slot, or in its own for
// client-credentials tokens.
func (s *Store) atKey(jti, family string) string {
	if family == "" {
		return s.prefix + "{j:" + enc(jti) + "}:at"
	}
	return s.famTag(family) + ":at:" + enc(jti)
}
func (s *Store) assertionKey(clientID, jti string) string {
	return s.prefix + "{a:" + enc(clientID) + ":" + enc(jti) + "}"
}
func (s *Store) sessionKey(idHash string) string { return s.prefix + "{s:" + enc(idHash) + "}" }
func (s *Store) requestKey(idHash string) string { return s.prefix + "{r:" + enc(idHash) + "}" }
func (s *Store) consentKey(subject, clientID string) string {
	return s.prefix + "{u:" + enc(subject) + "}:c:" + enc(clientID)
}
func (s *Store) limitKey(key string, windowStart int64) string {
	return s.prefix + "{l:" + enc(key) + "}:" + strconv.FormatInt(windowStart, 10)
}
func (s *Store) groupKey(group, name string, windowStart int64) string {
	return s.prefix + "{g:" + enc(group) + "}:" + enc(name) + ":" + strconv.FormatInt(windowStart, 10)
}

// --- running scripts ---

// run runs a script: EVALSHA, then EVAL on NOSCRIPT (after SCRIPT FLUSH, a restart or a
// failover to a replica that never saw the script; case 80). Concurrent calls share round
// trips (batcher).
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	if s.batch == nil {
		return sc.Run(ctx, s.rdb, keys, args...)
	}
	return s.batch.run(ctx, sc, keys, args...)
}

// runDurable runs a script that decides a token's fate and, with WithWaitReplicas, then WAITs
// on the same connection: WAIT only covers the writes of the connection that issues it.
func (s *Store) runDurable(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	if s.waitN <= 0 {
		return s.run(ctx, sc, keys, args...).Slice()
	}
	var node *redis.Client
	switch c := s.rdb.(type) {
	case *redis.Client:
		node = c
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = n
	default:
		// A Ring or another wrapper has no single connection to wait on.
		return s.run(ctx, sc, keys, args...).Slice()
	}
	conn := node.Conn()
	// Close hands the connection back to the pool; it fails only when already closed.
	defer func() { _ = conn.Close() }()
	reply, err := sc.Run(ctx, conn, keys, args...).Slice()
	if err != nil {
		return nil, err
	}
	acked, werr := conn.Wait(ctx, s.waitN, s.waitTimeout).Result()
	if s.onWait != nil {
		s.onWait(op, int(acked), s.waitN, werr)
	}
	// Fail closed (see WithWaitReplicas): the write is on the master only.
	if werr != nil {
		return nil, errors.Join(store.ErrUnavailable, fmt.Errorf("wait for replicas: %w", werr))
	}
	if int(acked) < s.waitN {
		return nil, fmt.Errorf("%w: %d of %d replicas acknowledged within %v",
			store.ErrUnavailable, acked, s.waitN, s.waitTimeout)
	}
	return reply, nil
}

// status reads the status word of a script reply.
func status(reply []any) (string, error) {
	if len(reply) == 0 {
		return "", errors.New("empty script reply")
	}
	st, ok := reply[0].(string)
	if !ok {
		return "", fmt.Errorf("script reply starts with %T", reply[0])
	}
	return st, nil
}

// statusErr maps the status words every script shares; reuse is the error for REUSED.
func statusErr(st string, reuse error) error {
	switch st {
	case "OK":
		return nil
	case "NOTFOUND":
		return store.ErrNotFound
	case "REUSED":
		if reuse != nil {
			return reuse
		}
	case "REVOKED":
		return store.ErrRevoked
	case "MISMATCH":
		return store.ErrClientMismatch
	case "REPLAY":
		return store.ErrReplay
	}
	return fmt.Errorf("unexpected script status %q", st)
}

// --- errors ---

// transient are the error replies that mean "Redis cannot serve now", not "the request is
// wrong": loading a dataset, a cluster or Sentinel failover in progress, a script or memory
// limit, or an authentication/ACL misconfiguration. They become store.ErrUnavailable (503).
var transient = []string{
	"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "NOREPLICAS", "BUSY",
	"OOM", "MISCONF", "MOVED", "ASK", "NOSCRIPT", "NOAUTH", "WRONGPASS", "NOPERM",
	"ERR max number of clients",
}

// wrap prefixes err with op and classifies it: redis.Nil becomes store.ErrNotFound; a failure
// to reach or use Redis wraps store.ErrUnavailable with the cause joined, so errors.Is works
// for both and the cause is kept for the log.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	case unavailable(err):
		return fmt.Errorf("%s: %w", op, errors.Join(store.ErrUnavailable, err))
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

func unavailable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range transient {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Not an error reply from Redis: a dial, I/O, pool or context failure, or a closed client.
	return true
}

// --- encoding ---

// ms is a time as integer milliseconds since the Unix epoch, the unit of every stored time.
func ms(t time.Time) int64 { return t.UnixMilli() }

func msArg(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// authTimeArg stores a zero time as "" so it reads back as the zero time.
func authTimeArg(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return msArg(t)
}

func parseTime(v any) time.Time {
	str, _ := v.(string)
	if str == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func parseInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func durArg(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
