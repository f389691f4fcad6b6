package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every audit event of the token server appears, once a real flow has caused it, with its
// client, subject, family (where there is one) and request id, and the stream never holds a
// token, code, secret or password.
func TestAuditStream(t *testing.T) {
	var buf syncBuffer
	var forbidden []string
	e := newFlowEnv(t, []envOption{withOptions(func(o *server.Options) {
		l, err := audit.New(slog.NewJSONHandler(&buf, nil), o.Registerer)
		if err != nil {
			t.Fatal(err)
		}
		o.Audit = l
	})})
	forbidden = append(forbidden, e.svcSecret, e.webSecret, alicePassword)

	// token_issued (client_credentials)
	forbidden = append(forbidden, e.cc(nil))

	// login_failed, login_succeeded, token_issued (authorization_code)
	p := newPKCE()
	b := e.browser(t)
	rec := b.authorize(authz("spa", spaRedirect, "openid offline_access read", p))
	page := b.follow(rec)
	const wrongPassword = "not-alices-password-8c1f"
	forbidden = append(forbidden, wrongPassword, p.verifier)
	page = b.submitLogin(page, "alice", wrongPassword)
	if page.Code != 400 {
		t.Fatalf("wrong password: %d", page.Code)
	}
	code := e.codeFrom(t, b.submitLogin(page, "alice", alicePassword), spaRedirect, "st-spa")
	tk := e.tokensFrom(t, e.exchange(code, p.verifier, spaRedirect))
	forbidden = append(forbidden, code, tk.AccessToken, tk.RefreshToken, tk.IDToken)

	// refresh_token_rotated and token_issued (refresh_token), then refresh_token_reuse_detected
	tk2 := e.tokensFrom(t, e.refresh(tk.RefreshToken, nil))
	forbidden = append(forbidden, tk2.AccessToken, tk2.RefreshToken, tk2.IDToken)
	if rec := e.refresh(tk.RefreshToken, nil); rec.Code != 400 {
		t.Fatalf("reuse: %d %s", rec.Code, rec.Body)
	}

	// token_revoked
	tk3 := e.spaTokens(t, "openid offline_access read")
	forbidden = append(forbidden, tk3.AccessToken, tk3.RefreshToken, tk3.IDToken)
	if rec := e.post("/revoke", url.Values{"token": {tk3.RefreshToken}, "client_id": {"spa"}}); rec.Code != 200 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}

	// consent_given, consent_denied
	pw := newPKCE()
	forbidden = append(forbidden, pw.verifier)
	webCode := e.codeFrom(t, e.browser(t).signIn(authz("web", webRedirect, "openid read", pw), "alice", alicePassword), webRedirect, "st-web")
	forbidden = append(forbidden, webCode)
	// authorization_code_reuse_detected
	tw := e.tokensFrom(t, e.exchange(webCode, pw.verifier, webRedirect, basic("web", e.webSecret)))
	forbidden = append(forbidden, tw.AccessToken, tw.RefreshToken, tw.IDToken)
	if rec := e.exchange(webCode, pw.verifier, webRedirect, basic("web", e.webSecret)); rec.Code != 400 {
		t.Fatalf("code replay: %d %s", rec.Code, rec.Body)
	}
	b2 := e.browser(t)
	q := authz("web", webRedirect, "openid read", newPKCE())
	q.Set("prompt", "consent") // the first decision is remembered
	rec = b2.submitLogin(b2.follow(b2.authorize(q)), "alice", alicePassword)
	if got := authzError(t, b2.submitConsent(b2.follow(rec), "deny"), webRedirect, "st-web"); got != "access_denied" {
		t.Fatalf("deny: %s", got)
	}

	out := buf.String()
	var records []map[string]any
	for line := range strings.Lines(out) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if r["msg"] != audit.LoggerName {
			t.Fatalf("record with message %v in the audit stream", r["msg"])
		}
		records = append(records, r)
	}
	type want struct {
		client, subject string
		family          bool
	}
	for name, w := range map[string]want{
		audit.TokenIssued:          {"svc", "client:svc", false},
		audit.LoginFailed:          {"spa", "alice", false},
		audit.LoginSucceeded:       {"spa", "alice", false},
		audit.RefreshRotated:       {"spa", "alice", true},
		audit.RefreshReuseDetected: {"spa", "", true},
		audit.CodeReuseDetected:    {"web", "alice", true},
		audit.TokenRevoked:         {"spa", "", true},
		audit.ConsentGiven:         {"web", "alice", false},
		audit.ConsentDenied:        {"web", "alice", false},
	} {
		found := false
		for _, r := range records {
			if r[audit.KeyEvent] != name || r[audit.KeyClient] != w.client {
				continue
			}
			if w.subject != "" && r[audit.KeySubject] != w.subject {
				continue
			}
			if id, _ := r[audit.KeyRequestID].(string); id == "" {
				t.Fatalf("%s without a request id: %v", name, r)
			}
			if fam, _ := r[audit.KeyFamily].(string); w.family && fam == "" {
				t.Fatalf("%s without a family: %v", name, r)
			}
			found = true
		}
		if !found {
			t.Errorf("no %s record for client %s subject %q in:\n%s", name, w.client, w.subject, out)
		}
	}
	// token_issued of the code grant carries the family too.
	fams := 0
	for _, r := range records {
		if r[audit.KeyEvent] == audit.TokenIssued && r["grant"] == "authorization_code" && r[audit.KeyFamily] != "" && r[audit.KeySubject] == "alice" {
			fams++
		}
	}
	if fams == 0 {
		t.Errorf("no token_issued record of the code grant with its family")
	}
	for _, v := range forbidden {
		if v != "" && strings.Contains(out, v) {
			t.Errorf("the audit stream holds a token, code, secret or password (%d bytes)", len(v))
		}
	}
	for _, m := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"latchkey_server_logins_total", map[string]string{"result": "succeeded"}, 1},
		{"latchkey_server_logins_total", map[string]string{"result": "failed"}, 1},
		{"latchkey_server_consents_total", map[string]string{"decision": "given"}, 1},
		{"latchkey_server_consents_total", map[string]string{"decision": "denied"}, 1},
		{"latchkey_server_refresh_tokens_rotated_total", nil, 1},
		{"latchkey_server_code_reuse_total", nil, 1},
		{"latchkey_server_refresh_token_reuse_total", map[string]string{"client": "spa"}, 1},
		{"latchkey_server_tokens_revoked_total", map[string]string{"token_type": "refresh_token"}, 1},
	} {
		if got := metricValue(t, e.env, m.name, m.labels); got < m.min {
			t.Errorf("%s%v = %v, want at least %v", m.name, m.labels, got, m.min)
		}
	}
}
