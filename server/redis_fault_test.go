package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/server"
	"github.com/latchkey-dev/latchkey/server/store/redisstore"
	"github.com/latchkey-dev/latchkey/server/tokenid"
)

// SECURITY-CASES 76-84 (section I) at the HTTP edge: each test runs the token server on a
// real redis-server of its own, through the client --redis-url would build (ParseURL's
// timeouts, not a test client's), and breaks that Redis for real: SIGKILL, FLUSHALL, SCRIPT
// FLUSH, DEBUG SLEEP, CLIENT PAUSE, a planted key of the wrong type, every pooled connection
// taken. The store-level twins of these tests are in server/store/redisstore/faults_test.go.

// budget is the longest any request may take while Redis misbehaves: the server's request
// deadline. The client timeouts of ParseURL end most calls far sooner (about 1 s); the
// durations are logged.
const budget = server.RequestTimeout

// faultEnv is a flowEnv whose store runs on a Redis the test owns, through a client with
// --redis-url's options and a fault hook.
type faultEnv struct {
	*flowEnv
	srv   *redistest.Server
	rdb   *redis.Client
	fault *scriptFault
}

type faultConfig struct {
	redisArgs []string
	query     string
	flow      []flowOption
	// oneConnectionPool switches off go-redis's separate pipeline pool, so that holding
	// pool_size connections exhausts every connection the store can get: with it, the
	// store's batched scripts would spill to it, which only helps.
	oneConnectionPool bool
	// storeOpts configure the store (WithWaitReplicas).
	storeOpts []redisstore.Option
}

// newFaultEnv starts a redis-server with args and the server on it. query is appended to the
// Redis URL (e.g. "pool_size=3").
func newFaultEnv(t *testing.T, cfg faultConfig) *faultEnv {
	t.Helper()
	srv := redistest.Start(t, cfg.redisArgs...)
	u := srv.URL()
	if cfg.query != "" {
		u += "?" + cfg.query
	}
	o, err := redisstore.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if o.IsClusterMode || o.MasterName != "" {
		t.Fatal("not a standalone Redis URL")
	}
	if cfg.oneConnectionPool {
		o.PipelinePoolSize = -1
	}
	rdb := redis.NewClient(o.Simple())
	t.Cleanup(func() { _ = rdb.Close() })
	fault := &scriptFault{}
	rdb.AddHook(fault)
	st := redisstore.New(rdb, cfg.storeOpts...)
	fe := newFlowEnv(t, []envOption{withOptions(func(o *server.Options) { o.Store = st })}, cfg.flow...)
	// The helpers that ask the store (rtLive) and the Redis handle use this Redis.
	fe.store, fe.redis = st, srv
	return &faultEnv{flowEnv: fe, srv: srv, rdb: rdb, fault: fault}
}

// scriptFault is a go-redis hook that, once armed, acts on the next script call whose keys
// match: before it is sent, or after its reply (when the script has run on the server). It
// wraps go-redis's retries, so what it does is what the store sees. Single requests send
// their script as one command (the store's batcher pipelines only concurrent calls), which is
// where the tests arm it.
type scriptFault struct{ armed atomic.Pointer[fault] }

type fault struct {
	match func(keys []string) bool
	// before runs before the script is sent; after replaces the error of its reply.
	before func()
	after  func(err error) error
}

func (h *scriptFault) arm(f *fault) { h.armed.Store(f) }

func (h *scriptFault) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptFault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *scriptFault) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f := h.armed.Load()
		keys := scriptKeys(cmd)
		if f == nil || keys == nil || !f.match(keys) {
			return next(ctx, cmd)
		}
		if f.before != nil {
			if h.armed.CompareAndSwap(f, nil) {
				f.before()
			}
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return err // not run yet: go-redis sends EVAL next, which is the call to break
		}
		if h.armed.CompareAndSwap(f, nil) {
			return f.after(err)
		}
		return err
	}
}

// scriptKeys returns the KEYS of an EVALSHA or EVAL, nil for any other command.
func scriptKeys(cmd redis.Cmder) []string {
	name := strings.ToLower(cmd.Name())
	args := cmd.Args()
	if (name != "evalsha" && name != "eval") || len(args) < 3 {
		return nil
	}
	n, _ := strconv.Atoi(fmt.Sprint(args[2]))
	if n <= 0 || len(args) < 3+n {
		return nil
	}
	keys := make([]string, n)
	for i, k := range args[3 : 3+n] {
		keys[i] = fmt.Sprint(k)
	}
	return keys
}

// isCreateCode matches the script that stores a new authorization code: keys code, family.
func isCreateCode(keys []string) bool { return len(keys) == 2 && strings.Contains(keys[0], "}:code:") }

// isRotation matches the refresh rotation script: keys family, used, access token.
func isRotation(keys []string) bool { return len(keys) == 3 && strings.HasSuffix(keys[1], "}:used") }

// timed runs one request and fails the test unless it is answered within budget; then it
// returns nil. It may run on any goroutine (it never calls FailNow).
func timed(t *testing.T, what string, fn func() *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	start := time.Now()
	go func() { done <- fn() }()
	select {
	case rec := <-done:
		t.Logf("%s: %d after %v", what, rec.Code, time.Since(start).Round(time.Millisecond))
		return rec
	case <-time.After(budget):
		t.Errorf("%s: no answer within the request budget (%v)", what, budget)
		return nil
	}
}

// mustTimed is timed on the test's goroutine: no answer in time ends the test.
func mustTimed(t *testing.T, what string, fn func() *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	rec := timed(t, what, fn)
	if rec == nil {
		t.FailNow()
	}
	return rec
}

// goroutineBaseline lets a test check that a fault left no goroutine behind once it has
// passed. Pools and go-redis's dial prober come and go, so the count must return to within a
// small tolerance, eventually.
func goroutineBaseline(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		const tolerance = 8
		eventually(t, fmt.Sprintf("goroutines back to %d (+%d)", before, tolerance), func() bool {
			return runtime.NumGoroutine() <= before+tolerance
		})
		t.Logf("goroutines: %d before the fault, %d after", before, runtime.NumGoroutine())
	}
}

func (e *faultEnv) readyz() int {
	return e.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)).Code
}

// wantRecovered waits for the server to be ready and issue tokens again, with no restart.
func (e *faultEnv) wantRecovered(t *testing.T) {
	t.Helper()
	eventually(t, "readyz after the fault", func() bool { return e.readyz() == http.StatusOK })
	eventually(t, "a token after the fault", func() bool {
		return e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret)).Code == http.StatusOK
	})
}

// wantNoLocation fails if a response redirects anywhere.
func wantNoLocation(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if loc := rec.Header().Get("Location"); loc != "" {
		t.Fatalf("answer redirects to %s", loc)
	}
}

// outageProbe is every endpoint of the token server, each in the state where it must touch
// Redis: a code to redeem, a refresh token, an access token, a signed-in browser, a browser
// on the login page, a fresh browser.
type outageProbe struct {
	code       string
	verifier   string
	tk         tokens
	cc         string
	signedIn   *browser
	onLogin    *browser
	loginPage  *httptest.ResponseRecorder
	newBrowser *browser
}

func (e *faultEnv) probe(t *testing.T) *outageProbe {
	t.Helper()
	p := &outageProbe{tk: e.spaTokens(t, "openid read"), cc: e.cc(nil)}
	pk := newPKCE()
	e.logs.forbid(pk.verifier)
	p.signedIn = e.browser(t)
	p.code = e.codeFrom(t, p.signedIn.signIn(authz("spa", spaRedirect, "openid", pk), "alice", alicePassword), spaRedirect, "st-spa")
	p.verifier = pk.verifier
	p.onLogin = e.browser(t)
	p.loginPage = p.onLogin.follow(p.onLogin.authorize(authz("spa", spaRedirect, "openid", newPKCE())))
	p.newBrowser = e.browser(t)
	return p
}

// wantOutage checks every endpoint while Redis cannot serve: JSON 503 temporarily_unavailable
// at /token (every grant), /introspect and /revoke; a redirect with
// error=temporarily_unavailable at /authorize (a signed-in user and a new one); a 503 login
// page; /readyz 503 and /healthz 200. Each within the request budget, and none with a token
// or code. The requests run concurrently when parallel is set (a hung Redis must not hold
// them in line).
func (e *faultEnv) wantOutage(t *testing.T, p *outageProbe, parallel bool) {
	t.Helper()
	cc := url.Values{"grant_type": {"client_credentials"}}
	jsonCases := []struct {
		name string
		fn   func() *httptest.ResponseRecorder
	}{
		{"/token client_credentials", func() *httptest.ResponseRecorder { return e.post("/token", cc, basic("svc", e.svcSecret)) }},
		{"/token authorization_code", func() *httptest.ResponseRecorder { return e.exchange(p.code, p.verifier, spaRedirect) }},
		{"/token refresh_token", func() *httptest.ResponseRecorder { return e.refresh(p.tk.RefreshToken, nil) }},
		{"/introspect access token", func() *httptest.ResponseRecorder {
			return e.post("/introspect", url.Values{"token": {p.cc}}, basic("svc", e.svcSecret))
		}},
		{"/introspect refresh token", func() *httptest.ResponseRecorder {
			return e.post("/introspect", url.Values{"token": {p.tk.RefreshToken}}, basic("svc", e.svcSecret))
		}},
		{"/revoke access token", func() *httptest.ResponseRecorder {
			return e.post("/revoke", url.Values{"token": {p.cc}}, basic("svc", e.svcSecret))
		}},
		{"/revoke refresh token", func() *httptest.ResponseRecorder {
			return e.post("/revoke", url.Values{"token": {p.tk.RefreshToken}, "client_id": {"spa"}})
		}},
	}
	var wg sync.WaitGroup
	run := func(f func()) {
		if !parallel {
			f()
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	type result struct {
		name string
		rec  *httptest.ResponseRecorder
	}
	var mu sync.Mutex
	var results []result
	keep := func(name string, rec *httptest.ResponseRecorder) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, result{name, rec})
	}
	for _, c := range jsonCases {
		run(func() { keep(c.name, timed(t, c.name, c.fn)) })
	}
	run(func() {
		keep("/authorize signed in", timed(t, "/authorize signed in", func() *httptest.ResponseRecorder {
			return p.signedIn.authorize(authz("spa", spaRedirect, "openid", newPKCE()))
		}))
	})
	run(func() {
		keep("/authorize new browser", timed(t, "/authorize new browser", func() *httptest.ResponseRecorder {
			return p.newBrowser.authorize(authz("spa", spaRedirect, "openid", newPKCE()))
		}))
	})
	run(func() {
		keep("POST /login", timed(t, "POST /login", func() *httptest.ResponseRecorder {
			return p.onLogin.submitLogin(p.loginPage, "alice", alicePassword)
		}))
	})
	run(func() {
		keep("/readyz", timed(t, "/readyz", func() *httptest.ResponseRecorder {
			return e.do(httptest.NewRequest(http.MethodGet, "/readyz", nil))
		}))
	})
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].name < results[j].name })
	if len(results) != len(jsonCases)+4 {
		t.Fatalf("%d answers", len(results))
	}
	for _, r := range results {
		if r.rec == nil {
			continue // timed failed the test
		}
		switch {
		case strings.HasPrefix(r.name, "/authorize"):
			if got := authzError(t, r.rec, spaRedirect, "st-spa"); got != "temporarily_unavailable" {
				t.Fatalf("%s: error=%s, want temporarily_unavailable", r.name, got)
			}
		case r.name == "POST /login":
			if r.rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("%s: %d, want 503", r.name, r.rec.Code)
			}
			wantNoLocation(t, r.rec)
		case r.name == "/readyz":
			if r.rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz: %d, want 503", r.rec.Code)
			}
		default:
			assertError(t, r.rec, http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
		}
	}
	if code := e.do(httptest.NewRequest(http.MethodGet, "/healthz", nil)).Code; code != http.StatusOK {
		t.Fatalf("/healthz %d: liveness must not depend on Redis", code)
	}
}

// Case 76: Redis is SIGKILLed under load and restarted. Every endpoint answers as wantOutage
// says within the budget; every token that was answered 200 before, during or after the kill
// is recorded (Redis runs with appendfsync always here, so what it acknowledged survives the
// restart, and every such access token introspects active); the same server recovers; no
// goroutine is left behind. Killing Redis exactly when a code is about to be stored (the
// session read succeeded) redirects with temporarily_unavailable and no code.
func TestRedisKilled(t *testing.T) {
	e := newFaultEnv(t, faultConfig{redisArgs: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	p := e.probe(t)
	leaks := goroutineBaseline(t)

	// Clients hammer the token endpoint while Redis dies; every 200 is kept.
	var issued sync.Map
	var failures, successes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rec := e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret))
				switch rec.Code {
				case http.StatusOK:
					var tk tokens
					if err := jsonDecode(rec.Body.Bytes(), &tk); err != nil || tk.AccessToken == "" {
						failures.Add(1000)
						return
					}
					e.logs.forbid(tk.AccessToken)
					issued.Store(tk.AccessToken, true)
					successes.Add(1)
				case http.StatusServiceUnavailable:
					failures.Add(1)
				default:
					failures.Add(1000)
					return
				}
			}
		}()
	}
	eventually(t, "tokens under load", func() bool { return successes.Load() >= 20 })
	e.srv.Kill()
	eventually(t, "the load sees the outage", func() bool { return failures.Load() >= 8 })
	close(stop)
	wg.Wait()
	if f := failures.Load(); f >= 1000 {
		t.Fatal("a request during the kill got neither 200 nor 503")
	}

	e.wantOutage(t, p, false)

	e.srv.Restart()
	e.wantRecovered(t)
	n := 0
	issued.Range(func(k, _ any) bool {
		n++
		if !e.active(t, k.(string)) {
			t.Fatalf("an access token answered 200 is not recorded")
		}
		return true
	})
	t.Logf("%d tokens issued around the kill, all recorded", n)
	// The state from before the kill survived (AOF): the refresh token still rotates.
	e.rotate(t, p.tk.RefreshToken, nil)

	t.Run("killed at code issuance", func(t *testing.T) {
		e.fault.arm(&fault{match: isCreateCode, before: e.srv.Kill})
		rec := mustTimed(t, "/authorize", func() *httptest.ResponseRecorder {
			return p.signedIn.authorize(authz("spa", spaRedirect, "openid", newPKCE()))
		})
		if got := authzError(t, rec, spaRedirect, "st-spa"); got != "temporarily_unavailable" {
			t.Fatalf("error=%s, want temporarily_unavailable", got)
		}
		e.srv.Restart()
		e.wantRecovered(t)
		// The session survived; the next authorization gives a code at once.
		e.codeFrom(t, p.signedIn.authorize(authz("spa", spaRedirect, "openid", newPKCE())), spaRedirect, "st-spa")
	})
	leaks()
}

// jsonDecode is decode without a test, for goroutines.
func jsonDecode(b []byte, v any) error {
	return json.Unmarshal(b, v)
}

// Case 77 (and 34): Redis is SIGKILLed after the rotation script committed and before its reply
// reached the server (a fault hook; Redis persists with appendfsync always, so the rotation
// is there after the restart). The client gets 503 and keeps R0. Its retry after a second
// follows decision D1: with reuseInterval 0 it is reuse, and the whole family is dead, the
// lost successor included; within a reuse interval it gets a new successor, and the lost one
// is dead. There are never two live refresh tokens.
func TestRedisKilledBetweenCommitAndReply(t *testing.T) {
	for _, reuse := range []time.Duration{0, 10 * time.Second} {
		t.Run("reuseInterval "+reuse.String(), func(t *testing.T) {
			e := newFaultEnv(t, faultConfig{
				redisArgs: []string{"--appendonly", "yes", "--appendfsync", "always"},
				flow:      []flowOption{withReuseInterval(reuse)},
			})
			t0 := e.spaTokens(t, "openid read")
			r0 := t0.RefreshToken
			family, _, _ := tokenid.ParseRefreshToken(r0)
			e.fault.arm(&fault{match: isRotation, after: func(err error) error {
				if err != nil {
					return err
				}
				e.srv.Kill()
				return io.ErrUnexpectedEOF
			}})
			rec := mustTimed(t, "refresh", func() *httptest.ResponseRecorder { return e.refresh(r0, nil) })
			assertError(t, rec, http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)

			e.srv.Restart()
			e.wantRecovered(t)
			// The rotation did commit: R0 is no longer the live token of its family.
			if e.rtLive(t, r0) {
				t.Fatal("the rotation did not commit before the kill")
			}
			admin := e.srv.Client(t)
			lostHash, err := admin.HGet(context.Background(), "lk:{f:"+family+"}:fam", "cur").Result()
			if err != nil || lostHash == "" {
				t.Fatalf("no live successor recorded: %v", err)
			}

			e.advance(time.Second)
			retry := e.refresh(r0, nil)
			cur, err := admin.HGet(context.Background(), "lk:{f:"+family+"}:fam", "cur").Result()
			if err != nil {
				t.Fatal(err)
			}
			rv, _ := admin.HGet(context.Background(), "lk:{f:"+family+"}:fam", "rv").Result()
			if reuse == 0 {
				assertError(t, retry, http.StatusBadRequest, "invalid_grant", invalidRT)
				if rv != "1" {
					t.Fatal("reuse after a lost reply did not revoke the family")
				}
				if e.active(t, t0.AccessToken) {
					t.Fatal("the family's access token survived the reuse")
				}
				return
			}
			t2 := e.tokensFrom(t, retry)
			// One live token, the new successor: the lost one was replaced, R0 is used.
			if rv != "0" || cur == lostHash || !e.rtLive(t, t2.RefreshToken) || e.rtLive(t, r0) {
				t.Fatalf("after the retry: revoked %q, the lost successor still current %v, new live %v",
					rv, cur == lostHash, e.rtLive(t, t2.RefreshToken))
			}
			e.rotate(t, t2.RefreshToken, nil)
		})
	}
}

// Case 78: Redis flushed (a restart without persistence). Every code and refresh token the
// server issued, the live, the used, the revoked, gives invalid_grant; access tokens
// introspect inactive; a signed-in browser must sign in again. Nothing answers 500, and no
// path treats "not found" as valid.
func TestRedisFlushAllFailsClosed(t *testing.T) {
	e := newFaultEnv(t, faultConfig{})
	live := e.spaTokens(t, "openid read")
	used := e.spaTokens(t, "openid read")
	rotated := e.rotate(t, used.RefreshToken, nil)
	revoked := e.spaTokens(t, "openid")
	if rec := e.post("/revoke", url.Values{"token": {revoked.RefreshToken}, "client_id": {"spa"}}); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	pk := newPKCE()
	e.logs.forbid(pk.verifier)
	b := e.browser(t)
	code := e.codeFrom(t, b.signIn(authz("spa", spaRedirect, "openid", pk), "alice", alicePassword), spaRedirect, "st-spa")
	cc := e.cc(nil)

	if err := e.srv.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}

	assertError(t, e.exchange(code, pk.verifier, spaRedirect), http.StatusBadRequest, "invalid_grant",
		"the authorization code is invalid or expired")
	for name, rt := range map[string]string{
		"live": live.RefreshToken, "used": used.RefreshToken, "rotated": rotated.RefreshToken, "revoked": revoked.RefreshToken,
	} {
		rec := e.refresh(rt, nil)
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("%s refresh token after FLUSHALL: %d %s", name, rec.Code, rec.Body)
		}
		assertError(t, rec, http.StatusBadRequest, "invalid_grant", invalidRT)
	}
	for _, at := range []string{live.AccessToken, rotated.AccessToken, revoked.AccessToken, cc} {
		e.assertInactive(t, "svc", e.svcSecret, at)
	}
	// The session is gone: the browser is sent to the login page, not given a code.
	if u := location(t, b.authorize(authz("spa", spaRedirect, "openid", newPKCE()))); u.Path != "/login" {
		t.Fatalf("authorize after FLUSHALL went to %s, want the login page", u)
	}
	// And the service works: a new grant from scratch.
	e.rotate(t, e.spaTokens(t, "openid").RefreshToken, nil)
}

// Case 80: after SCRIPT FLUSH each script-backed step (code issuance, code redemption,
// rotation, revocation, introspection, client credentials) reloads its script (NOSCRIPT, then
// EVAL) and succeeds: never a 500.
func TestRedisScriptFlush(t *testing.T) {
	e := newFaultEnv(t, faultConfig{})
	flush := func() {
		t.Helper()
		if err := e.srv.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pk := newPKCE()
	e.logs.forbid(pk.verifier)
	b := e.browser(t)
	code := e.codeFrom(t, b.signIn(authz("spa", spaRedirect, "openid read", pk), "alice", alicePassword), spaRedirect, "st-spa")
	flush()
	tk := e.tokensFrom(t, e.exchange(code, pk.verifier, spaRedirect))
	flush()
	tk = e.rotate(t, tk.RefreshToken, nil)
	flush()
	// A signed-in user gets a code at once (session read, code stored).
	e.codeFrom(t, b.authorize(authz("spa", spaRedirect, "openid", newPKCE())), spaRedirect, "st-spa")
	flush()
	cc := e.cc(nil)
	flush()
	if !e.active(t, cc) || !e.active(t, tk.AccessToken) {
		t.Fatal("tokens inactive after SCRIPT FLUSH")
	}
	flush()
	if rec := e.post("/revoke", url.Values{"token": {tk.RefreshToken}, "client_id": {"spa"}}); rec.Code != http.StatusOK {
		t.Fatalf("revoke after SCRIPT FLUSH: %d %s", rec.Code, rec.Body)
	}
	if e.active(t, tk.AccessToken) {
		t.Fatal("revocation after SCRIPT FLUSH did not hold")
	}
}

// familyState is every key of a family's hash slot with its type and content.
func familyState(t *testing.T, rdb *redis.Client, family string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "lk:{f:"+family+"}*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		default:
			v = "?"
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = fmt.Sprintf("%s %v", typ, v)
	}
	return out
}

// Case 82: a key of the wrong type planted in a family's slot (the family record replaced by a
// string, then the used-token set) makes the rotation fail before its first write. The
// request is a JSON server_error (case 97) with no token; the family's keys are exactly as
// they were (no token marked used without a successor, no access token recorded); once the
// operator removes the planted key, the same refresh token rotates normally.
func TestRedisWrongTypeLeavesNoPartialState(t *testing.T) {
	e := newFaultEnv(t, faultConfig{})
	admin := e.srv.Client(t)
	ctx := context.Background()
	for _, victim := range []string{"fam", "used"} {
		t.Run(victim, func(t *testing.T) {
			tk := e.spaTokens(t, "openid read")
			family, _, _ := tokenid.ParseRefreshToken(tk.RefreshToken)
			key := "lk:{f:" + family + "}:" + victim
			if victim == "fam" {
				if err := admin.Rename(ctx, key, key+"-saved").Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := admin.Set(ctx, key, "planted", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			before := familyState(t, admin, family)
			rec := e.refresh(tk.RefreshToken, nil)
			assertError(t, rec, http.StatusInternalServerError, "server_error", "internal error")
			if strings.Contains(rec.Body.String(), "access_token") {
				t.Fatal("a token in a failed rotation")
			}
			if after := familyState(t, admin, family); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("the failed rotation wrote:\nbefore %v\nafter  %v", before, after)
			}
			// Repaired: the same token rotates (it was never marked used).
			if err := admin.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			if victim == "fam" {
				if err := admin.Rename(ctx, key+"-saved", key).Err(); err != nil {
					t.Fatal(err)
				}
			}
			e.rotate(t, tk.RefreshToken, nil)
		})
	}
}

// Case 84: Redis that accepts connections but does not answer (DEBUG SLEEP, CLIENT PAUSE), and
// a pool with every connection taken. Every endpoint answers as wantOutage says (the requests
// run concurrently, so a hung Redis cannot hold them in line), each within the request budget;
// /readyz reflects the fault; once it passes, the same server serves again, and no goroutine
// is left behind.
func TestRedisSlowOrExhausted(t *testing.T) {
	t.Run("DEBUG SLEEP", func(t *testing.T) {
		e := newFaultEnv(t, faultConfig{})
		p := e.probe(t)
		leaks := goroutineBaseline(t)
		sleeper := redis.NewClient(&redis.Options{Addr: e.srv.Addr, ReadTimeout: 30 * time.Second, MaxRetries: -1})
		t.Cleanup(func() { _ = sleeper.Close() })
		slept := make(chan error, 1)
		go func() { slept <- sleeper.Do(context.Background(), "DEBUG", "SLEEP", "5").Err() }()
		e.waitHung(t)
		e.wantOutage(t, p, true)
		if err := <-slept; err != nil {
			t.Fatalf("DEBUG SLEEP: %v", err)
		}
		e.wantRecovered(t)
		e.afterHang(t, p)
		leaks()
	})
	t.Run("CLIENT PAUSE", func(t *testing.T) {
		e := newFaultEnv(t, faultConfig{})
		p := e.probe(t)
		leaks := goroutineBaseline(t)
		if err := e.srv.Client(t).Do(context.Background(), "CLIENT", "PAUSE", "5000", "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		e.waitHung(t)
		e.wantOutage(t, p, true)
		e.wantRecovered(t)
		e.afterHang(t, p)
		leaks()
	})
	t.Run("exhausted pool", func(t *testing.T) {
		const size = 3
		e := newFaultEnv(t, faultConfig{query: "pool_size=" + strconv.Itoa(size), oneConnectionPool: true})
		p := e.probe(t)
		leaks := goroutineBaseline(t)
		release := e.holdPool(t, size)
		e.wantOutage(t, p, true)
		release()
		e.wantRecovered(t)
		e.rotate(t, p.tk.RefreshToken, nil)
		leaks()
	})
}

// Case 84 with case 80: the main pool is exhausted and the scripts are gone (a Redis restart
// or SCRIPT FLUSH). Concurrent calls leave in one pipeline on go-redis's separate pipeline
// connections, come back NOSCRIPT, and must each reload their script on the main pool: they
// do so side by side, so each request still answers 503 within the budget instead of waiting
// in line behind the others' pool timeouts.
func TestRedisExhaustedPoolAfterScriptFlush(t *testing.T) {
	const size, callers = 3, 8
	e := newFaultEnv(t, faultConfig{query: "pool_size=" + strconv.Itoa(size)})
	tokens := make([]string, callers)
	for i := range tokens {
		tokens[i] = e.cc(nil)
	}
	leaks := goroutineBaseline(t)
	release := e.holdPool(t, size)
	if err := e.srv.Client(t).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	recs := make([]*httptest.ResponseRecorder, 2*callers)
	for i := range callers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			recs[2*i] = timed(t, "/token", func() *httptest.ResponseRecorder {
				return e.post("/token", url.Values{"grant_type": {"client_credentials"}}, basic("svc", e.svcSecret))
			})
		}()
		go func() {
			defer wg.Done()
			recs[2*i+1] = timed(t, "/revoke", func() *httptest.ResponseRecorder {
				return e.post("/revoke", url.Values{"token": {tokens[i]}}, basic("svc", e.svcSecret))
			})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, rec := range recs {
		assertError(t, rec, http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
	}
	release()
	e.wantRecovered(t)
	leaks()
}

// afterHang checks the state a hang left. Requests that timed out may still have reached
// Redis, which ran them when it woke (their callers got 503; a write that lands anyway is one
// the caller was not told of, which is safe): the refresh token the probe tried to rotate and
// revoke is now either live or dead, and its family never has two live tokens. A new grant
// works from scratch.
func (e *faultEnv) afterHang(t *testing.T, p *outageProbe) {
	t.Helper()
	family, _, _ := tokenid.ParseRefreshToken(p.tk.RefreshToken)
	st := familyState(t, e.srv.Client(t), family)
	t.Logf("after the hang, the probe's refresh token is live: %v (%d keys in its slot)", e.rtLive(t, p.tk.RefreshToken), len(st))
	e.rotate(t, e.spaTokens(t, "openid").RefreshToken, nil)
}

// holdPool takes every connection of the server's main pool, as stuck requests would, until
// the returned function gives them back.
func (e *faultEnv) holdPool(t *testing.T, size int) func() {
	t.Helper()
	var held []*redis.Conn
	for range size {
		c := e.rdb.Conn()
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	return func() {
		for _, c := range held {
			_ = c.Close()
		}
	}
}

// waitHung waits until Redis accepts connections but does not answer a PING in 100ms.
func (e *faultEnv) waitHung(t *testing.T) {
	t.Helper()
	probe := redis.NewClient(&redis.Options{Addr: e.srv.Addr, ReadTimeout: 100 * time.Millisecond, MaxRetries: -1, PoolSize: 1})
	defer func() { _ = probe.Close() }()
	eventually(t, "redis stops answering", func() bool {
		return probe.Ping(context.Background()).Err() != nil
	})
}

// Decision D5 at the HTTP edge (--redis-wait-replicas 1): a code exchange and a refresh are
// answered only once the replica holds them, so the family read from the replica right after
// the reply is the one the reply describes. With the replica stopped, WAIT falls short and the
// request fails closed: 503 temporarily_unavailable for the refresh, the code exchange and the
// revocation, never a token. Once a replica is back, a new request succeeds.
func TestRedisWaitReplicas(t *testing.T) {
	e := newFaultEnv(t, faultConfig{
		redisArgs: []string{"--repl-diskless-sync-delay", "0"},
		// The generous timeout only keeps a loaded machine from turning lag into a shortfall:
		// WAIT returns as soon as the replica acknowledges.
		storeOpts: []redisstore.Option{redisstore.WithWaitReplicas(1, 3*time.Second)},
	})
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(e.srv.Port))
	rc := replica.Client(t)
	linkUp := func() bool {
		info, err := rc.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}
	eventually(t, "the replica in sync", linkUp)
	onReplica := func(rt string) bool {
		family, hash, _ := tokenid.ParseRefreshToken(rt)
		cur, err := rc.HGet(context.Background(), "lk:{f:"+family+"}:fam", "cur").Result()
		return err == nil && cur == hash
	}

	tk := e.spaTokens(t, "openid read")
	if !onReplica(tk.RefreshToken) {
		t.Fatal("the code redemption was answered before the replica had it")
	}
	for range 3 {
		tk = e.rotate(t, tk.RefreshToken, nil)
		if !onReplica(tk.RefreshToken) {
			t.Fatal("the rotation was answered before the replica had it")
		}
	}
	pk := newPKCE()
	e.logs.forbid(pk.verifier)
	code := e.codeFrom(t, e.browser(t).signIn(authz("spa", spaRedirect, "openid", pk), "alice", alicePassword), spaRedirect, "st-spa")
	other := e.spaTokens(t, "openid")

	replica.Stop()
	assertError(t, mustTimed(t, "refresh", func() *httptest.ResponseRecorder { return e.refresh(tk.RefreshToken, nil) }),
		http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
	assertError(t, mustTimed(t, "code exchange", func() *httptest.ResponseRecorder { return e.exchange(code, pk.verifier, spaRedirect) }),
		http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
	assertError(t, mustTimed(t, "revoke", func() *httptest.ResponseRecorder {
		return e.post("/revoke", url.Values{"token": {other.RefreshToken}, "client_id": {"spa"}})
	}), http.StatusServiceUnavailable, "temporarily_unavailable", unavailable)
	// Client credentials record only an access token, which no failover can turn into a
	// security problem (a lost record makes the token inactive): it does not wait.
	e.cc(nil)

	replica.Restart()
	eventually(t, "the replica back in sync", linkUp)
	// The client retries its revocation, which now holds on the replica too; a new grant works.
	if rec := e.post("/revoke", url.Values{"token": {other.RefreshToken}, "client_id": {"spa"}}); rec.Code != http.StatusOK {
		t.Fatalf("revoke once the replica is back: %d %s", rec.Code, rec.Body)
	}
	fresh := e.spaTokens(t, "openid")
	if !onReplica(fresh.RefreshToken) {
		t.Fatal("the redemption after recovery is not on the replica")
	}
}
