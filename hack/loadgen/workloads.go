package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/verifier"
)

// metadata is the part of the discovery document (RFC 8414) loadgen uses.
type metadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	GrantTypesSupported   []string `json:"grant_types_supported"`
}

// env is what the workloads share: the HTTP client and the server's endpoints.
type env struct {
	cfg   config
	http  *http.Client
	dials atomic.Int64
	md    metadata
	// basic is the Authorization header of the confidential client.
	basic string
}

// maxBody bounds what loadgen reads of a response; the largest, a login page, is a few KiB.
const maxBody = 1 << 20

func newEnv(ctx context.Context, cfg config) (*env, error) {
	e := &env{cfg: cfg, basic: clients.EncodeBasic(cfg.clientID, cfg.clientSecret)}
	if inProcess(cfg.workload) {
		return e, nil
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		// One idle connection per worker (and then some, for the code flow's two clients per
		// worker): a closed-loop worker always finds its connection idle and reuses it.
		MaxIdleConns:        4 * cfg.concurrency,
		MaxIdleConnsPerHost: 4 * cfg.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		// The server's WriteTimeout is 30 s; nothing here waits for a slow body.
		ResponseHeaderTimeout: cfg.timeout,
	}
	e.http = &http.Client{Transport: tr, Timeout: cfg.timeout, CheckRedirect: noRedirects}
	if err := e.discover(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// noRedirects makes the API workloads see a redirect as the error it would be.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// discover reads the issuer's metadata: the OpenID Connect form, appended to the issuer, which
// Latchkey serves for any issuer path.
func (e *env) discover(ctx context.Context) error {
	u := strings.TrimSuffix(e.cfg.issuer, "/") + "/.well-known/openid-configuration"
	status, body, err := e.do(ctx, http.MethodGet, u, "", nil)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("discovery: %s answered %d", u, status)
	}
	if err := json.Unmarshal(body, &e.md); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if e.md.Issuer != e.cfg.issuer {
		return fmt.Errorf("discovery: issuer is %q, want %q", e.md.Issuer, e.cfg.issuer)
	}
	return nil
}

// do sends one request with an optional form body and returns the status and the body.
func (e *env) do(ctx context.Context, method, u, authz string, form []byte) (int, []byte, error) {
	var body io.Reader
	if form != nil {
		body = bytes.NewReader(form)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// statusError describes an unexpected answer without echoing a token.
func statusError(what string, status int, body []byte) error {
	var oe struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &oe)
	if oe.Error != "" {
		return fmt.Errorf("%s: %d %s: %s", what, status, oe.Error, oe.Desc)
	}
	return fmt.Errorf("%s: status %d", what, status)
}

func (e *env) workload(ctx context.Context, name string) (newWorkerFunc, error) {
	switch name {
	case "cc":
		return e.clientCredentials(), nil
	case "introspect":
		return e.introspect(ctx)
	case "jwks":
		return e.jwks(), nil
	case "verify":
		return e.verify(ctx)
	case "code":
		return e.codeFlow()
	case "refresh":
		return e.refresh()
	case "raw-sign":
		return rawSign(jose.ES256)
	case "raw-sign-rs256":
		return rawSign(jose.RS256)
	case "raw-sign-eddsa":
		return rawSign(jose.EdDSA)
	case "raw-verify":
		return rawVerify()
	case "tls-handshake":
		return tlsHandshake()
	}
	return nil, fmt.Errorf("unknown workload %q", name)
}

// ccForm is the body of a client_credentials request.
func (e *env) ccForm() []byte {
	v := url.Values{"grant_type": {"client_credentials"}}
	if e.cfg.scope != "" {
		v.Set("scope", e.cfg.scope)
	}
	return []byte(v.Encode())
}

var (
	accessTokenMember = []byte(`"access_token":"`)
	activeTrue        = []byte(`"active":true`)
)

// sender returns a worker's way of sending one request: its own hand-written keep-alive
// connection (wireConn), or with -net-http the shared net/http client.
func (e *env) sender(method, u, authz string) (func(ctx context.Context, form []byte) (int, []byte, error), error) {
	if e.cfg.netHTTP {
		return func(ctx context.Context, form []byte) (int, []byte, error) {
			return e.do(ctx, method, u, authz, form)
		}, nil
	}
	w, err := e.newWireConn(u)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, form []byte) (int, []byte, error) {
		req, err := wireRequest(method, u, authz, form)
		if err != nil {
			return 0, nil, err
		}
		return w.do(ctx, req)
	}, nil
}

// fixedSender is sender for a request that never changes: its bytes are made once.
func (e *env) fixedSender(method, u, authz string, form []byte) (func(ctx context.Context) (int, []byte, error), error) {
	if e.cfg.netHTTP {
		return func(ctx context.Context) (int, []byte, error) { return e.do(ctx, method, u, authz, form) }, nil
	}
	w, err := e.newWireConn(u)
	if err != nil {
		return nil, err
	}
	req, err := wireRequest(method, u, authz, form)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (int, []byte, error) { return w.do(ctx, req) }, nil
}

func (e *env) clientCredentials() newWorkerFunc {
	form := e.ccForm()
	return func(context.Context, int) (op, error) {
		send, err := e.fixedSender(http.MethodPost, e.md.TokenEndpoint, e.basic, form)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			status, body, err := send(ctx)
			if err != nil {
				return err
			}
			if status != http.StatusOK || !bytes.Contains(body, accessTokenMember) {
				return statusError("token", status, body)
			}
			return nil
		}, nil
	}
}

// accessToken gets one client_credentials token for the introspect and verify workloads.
func (e *env) accessToken(ctx context.Context) (string, error) {
	tr, err := e.accessTokenResponse(ctx)
	if err != nil {
		return "", err
	}
	return tr.AccessToken, nil
}

func (e *env) accessTokenResponse(ctx context.Context) (*tokenResponse, error) {
	status, body, err := e.do(ctx, http.MethodPost, e.md.TokenEndpoint, e.basic, e.ccForm())
	if err != nil {
		return nil, err
	}
	var tr tokenResponse
	if status != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return nil, statusError("token", status, body)
	}
	return &tr, nil
}

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// introspect asks about a client_credentials token as its own client: a resource server that
// registered as a confidential client would do the same for its audience. Each worker gets its
// own token and a new one once half of its lifetime has passed, so a long run (the soak, with
// 1-minute tokens) keeps asking about live tokens.
func (e *env) introspect(ctx context.Context) (newWorkerFunc, error) {
	if e.md.IntrospectionEndpoint == "" {
		return nil, errors.New("the server advertises no introspection_endpoint")
	}
	if _, err := e.accessToken(ctx); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ int) (op, error) {
		var (
			send    func(ctx context.Context) (int, []byte, error)
			renewAt time.Time
		)
		renew := func(ctx context.Context) error {
			tr, err := e.accessTokenResponse(ctx)
			if err != nil {
				return err
			}
			form := []byte(url.Values{"token": {tr.AccessToken}, "token_type_hint": {"access_token"}}.Encode())
			if send, err = e.fixedSender(http.MethodPost, e.md.IntrospectionEndpoint, e.basic, form); err != nil {
				return err
			}
			renewAt = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second / 2)
			return nil
		}
		if err := renew(ctx); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			if time.Now().After(renewAt) {
				if err := renew(ctx); err != nil {
					return err
				}
			}
			status, body, err := send(ctx)
			if err != nil {
				return err
			}
			if status != http.StatusOK || !bytes.Contains(body, activeTrue) {
				return statusError("introspect", status, body)
			}
			return nil
		}, nil
	}, nil
}

func (e *env) jwks() newWorkerFunc {
	return func(context.Context, int) (op, error) {
		send, err := e.fixedSender(http.MethodGet, e.md.JWKSURI, "", nil)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			status, body, err := send(ctx)
			if err != nil {
				return err
			}
			if status != http.StatusOK || !bytes.Contains(body, []byte(`"keys"`)) {
				return statusError("jwks", status, body)
			}
			return nil
		}, nil
	}
}

// verify checks a token with the verifier package, as a resource server does on every call.
// One Verifier is shared by the workers, as in a real resource server.
func (e *env) verify(ctx context.Context) (newWorkerFunc, error) {
	tok, err := e.accessToken(ctx)
	if err != nil {
		return nil, err
	}
	v, err := verifier.New(ctx, e.cfg.issuer, verifier.WithAudience(e.cfg.audience), verifier.WithHTTPClient(e.http))
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return func(context.Context, int) (op, error) {
		return func(ctx context.Context) error {
			_, err := v.Verify(ctx, tok)
			return err
		}, nil
	}, nil
}

// supportsGrant reports whether discovery lists grant.
func (e *env) supportsGrant(grant string) bool {
	for _, g := range e.md.GrantTypesSupported {
		if g == grant {
			return true
		}
	}
	return false
}

// codeFlow runs the whole flow per op, each time as a new browser (an empty cookie jar), so
// every op includes the login: the cost a user's sign-in puts on the server.
func (e *env) codeFlow() (newWorkerFunc, error) {
	if !e.supportsGrant("authorization_code") || e.md.AuthorizationEndpoint == "" {
		return nil, errors.New("the server does not advertise the authorization_code grant and an authorization_endpoint")
	}
	return func(context.Context, int) (op, error) {
		return func(ctx context.Context) error {
			_, err := e.newBrowser().signIn(ctx)
			return err
		}, nil
	}, nil
}

// refresh gives each worker its own refresh-token family, started with one code flow, and
// rotates it once per op. A failed rotation starts a new family, so one error does not end
// the worker's run.
func (e *env) refresh() (newWorkerFunc, error) {
	if !e.supportsGrant("refresh_token") {
		return nil, errors.New("the server does not advertise the refresh_token grant")
	}
	if _, err := e.codeFlow(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ int) (op, error) {
		start := func(ctx context.Context) (string, error) {
			tr, err := e.newBrowser().signInScope(ctx, e.cfg.refreshScope)
			if err != nil {
				return "", err
			}
			if tr.RefreshToken == "" {
				return "", fmt.Errorf("the code flow with scope %q returned no refresh token", e.cfg.refreshScope)
			}
			return tr.RefreshToken, nil
		}
		rt, err := start(ctx)
		if err != nil {
			return nil, err
		}
		started := time.Now()
		send, err := e.sender(http.MethodPost, e.md.TokenEndpoint, "")
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			if e.cfg.familyAge > 0 && time.Since(started) > e.cfg.familyAge {
				next, err := start(ctx)
				if err != nil {
					return err
				}
				rt, started = next, time.Now()
			}
			form := []byte(url.Values{
				"grant_type":    {"refresh_token"},
				"refresh_token": {rt},
				"client_id":     {e.cfg.publicClient},
			}.Encode())
			status, body, err := send(ctx, form)
			var tr tokenResponse
			if err == nil && (status != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.RefreshToken == "" || tr.AccessToken == "") {
				err = statusError("refresh", status, body)
			}
			if err != nil {
				if next, serr := start(ctx); serr == nil {
					rt, started = next, time.Now()
				}
				return err
			}
			rt = tr.RefreshToken
			return nil
		}, nil
	}, nil
}
