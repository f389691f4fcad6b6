package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/latchkey-dev/latchkey/internal/redistest"
)

// TestRedisFaultsThroughTheBinary runs the binary as the chart runs it, with
// --redis-wait-replicas 1 set through the chart's extraArgs, on a Redis master with one
// replica (SECURITY-CASES 76, 79; decision D5). The server-level tests
// (server/redis_fault_test.go) cover each fault in depth; this one proves the flags, the
// chart and the process behave the same way:
//
//   - with the replica connected, a revocation is answered only once the replica holds it;
//   - with the replica stopped, a revocation fails closed (503 temporarily_unavailable) while
//     client credentials, which record only an access token, keep being served;
//   - with the master killed, /token, /revoke and /introspect answer 503
//     temporarily_unavailable and the token server's /readyz fails, while /healthz stays up
//     (the kubelet must not restart pods for a Redis outage);
//   - when Redis is back the same process recovers by itself.
func TestRedisFaultsThroughTheBinary(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{values: map[string]any{
		// The generous timeout only keeps a loaded machine from turning replication lag into
		// a shortfall: WAIT returns as soon as the replica acknowledges.
		"extraArgs": []any{"--redis-wait-replicas=1", "--redis-wait-timeout=2s"},
	}})
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.redis.Port))
	rc := replica.Client(t)
	eventually(t, 20*time.Second, func() error {
		info, err := rc.Info(t.Context(), "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica not in sync")
		}
		return nil
	})
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "ledger"))
	creds := s.waitCredentials(ns, "ledger")
	tok := b.eventuallyToken(creds, 30*time.Second)

	// Revoked with the replica connected: the replica has the revocation when the reply comes.
	if st, e := b.revoke(creds, tok); st != http.StatusOK {
		t.Fatalf("revoke with the replica connected: %d %s", st, e)
	}
	if n := revokedOnReplica(t, rc.Keys, rc.Get); n != 1 {
		t.Fatalf("%d revoked access tokens on the replica right after the reply, want 1", n)
	}
	if active, st := b.introspect(creds, tok); st != http.StatusOK || active {
		t.Fatalf("introspect a revoked token: %d active=%v", st, active)
	}
	if out := b.out.String(); strings.Contains(out, "unknown flag") {
		t.Fatal("the binary refused the chart's extraArgs")
	}

	// The replica stops: revocations fail closed, client credentials go on.
	replica.Stop()
	tok = b.mustToken(creds)
	if st, e := b.revoke(creds, tok); st != http.StatusServiceUnavailable || e != "temporarily_unavailable" {
		t.Fatalf("revoke with no replica to acknowledge: %d %s, want 503 temporarily_unavailable", st, e)
	}

	// The master dies: 503 everywhere, /readyz fails, /healthz does not.
	s.redis.Kill()
	r, err := b.token(creds.ClientID, creds.ClientSecret)
	if err != nil || r.Status != http.StatusServiceUnavailable || r.Error != "temporarily_unavailable" || r.AccessToken != "" {
		t.Fatalf("/token with Redis down: %v %v", r, err)
	}
	if st, e := b.revoke(creds, tok); st != http.StatusServiceUnavailable || e != "temporarily_unavailable" {
		t.Fatalf("/revoke with Redis down: %d %s", st, e)
	}
	if _, st := b.introspect(creds, tok); st != http.StatusServiceUnavailable {
		t.Fatalf("/introspect with Redis down: %d", st)
	}
	if code, _, err := b.get("/readyz"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %d %v", code, err)
	}
	if code, _, err := b.get("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz with Redis down: %d %v", code, err)
	}

	// Both come back (empty: no persistence); the process recovers by itself.
	s.redis.Restart()
	replica.Restart()
	b.waitReady(30 * time.Second)
	tok = b.eventuallyToken(creds, 30*time.Second)
	eventually(t, 30*time.Second, func() error {
		if st, e := b.revoke(creds, tok); st != http.StatusOK {
			return fmt.Errorf("revoke after recovery: %d %s", st, e)
		}
		return nil
	})
	if !b.running() {
		t.Fatal("the binary exited during the Redis outage")
	}
}

// revokedOnReplica counts the client-credentials access-token records marked revoked
// ("<exp> 1 <client>", see server/store/redisstore) on a Redis node.
func revokedOnReplica(t *testing.T, keys func(context.Context, string) *redis.StringSliceCmd, get func(context.Context, string) *redis.StringCmd) int {
	t.Helper()
	ks, err := keys(t.Context(), "lk:{j:*}:at").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range ks {
		v, err := get(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(v); len(f) == 3 && f[1] == "1" {
			n++
		}
	}
	return n
}

// revoke revokes a token as a confidential client (RFC 7009) and returns the status and the
// OAuth error code, if any.
func (b *binary) revoke(c credentials, token string) (int, string) {
	b.sys.t.Helper()
	status, body := b.postForm("/revoke", c, url.Values{"token": {token}})
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return status, e.Error
}

// introspect asks about a token as a confidential client (RFC 7662) and returns whether it is
// active and the status.
func (b *binary) introspect(c credentials, token string) (bool, int) {
	b.sys.t.Helper()
	status, body := b.postForm("/introspect", c, url.Values{"token": {token}})
	var m struct {
		Active bool `json:"active"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Active, status
}

// postForm posts a form with client_secret_basic and returns the status and body.
func (b *binary) postForm(path string, c credentials, form url.Values) (int, []byte) {
	b.sys.t.Helper()
	ctx, cancel := context.WithTimeout(b.sys.t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.sys.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := b.sys.http.Do(req)
	if err != nil {
		b.sys.t.Fatalf("%s %s: %v", b.name, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.sys.t.Fatal(err)
	}
	return resp.StatusCode, body
}
