package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/clients"
	"github.com/latchkey-dev/latchkey/server/internal/servertest"
	"github.com/latchkey-dev/latchkey/server/store"
)

// failingStore fails RecordAccessToken with an error that is not ErrUnavailable.
type failingStore struct {
	store.Store
	err error
}

func (f failingStore) RecordAccessToken(context.Context, store.AccessTokenRecord, time.Time) error {
	return f.err
}

func newTestServer(t *testing.T, st func(store.Store) store.Store) (*Server, string) {
	t.Helper()
	clk := clocktesting.NewFakeClock(servertest.Epoch)
	keys := servertest.NewSigningKey(t, servertest.Namespace, "default", latchkeyv1.AlgorithmES256, clk.Now())
	svc, secret := servertest.ConfidentialClient("svc", "apps", servertest.WithClientID("svc"))
	redis, _ := servertest.RedisStore(t)
	s, err := New(Options{
		Issuer:    servertest.Issuer,
		Namespace: servertest.Namespace,
		Reader:    servertest.NewReader(append(keys.Objects(), svc, secret)...),
		Store:     st(redis),
		Clock:     clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, servertest.SecretOf(secret)
}

func ccRequest(secret string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", clients.EncodeBasic("svc", secret))
	return req
}

// Case 97: an unexpected store error is 500 server_error without details, and no token.
func TestUnexpectedStoreErrorIsServerError(t *testing.T) {
	s, secret := newTestServer(t, func(st store.Store) store.Store {
		return failingStore{Store: st, err: errors.New("WRONGTYPE secret detail")}
	})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, ccRequest(secret))
	if rec.Code != 500 || rec.Body.String() != `{"error":"server_error","error_description":"internal error"}`+"\n" ||
		rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %q %v", rec.Code, rec.Body, rec.Header())
	}
	// A store outage is 503 instead.
	s, secret = newTestServer(t, func(st store.Store) store.Store {
		return failingStore{Store: st, err: errors.Join(store.ErrUnavailable, errors.New("dial tcp: refused"))}
	})
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, ccRequest(secret))
	if rec.Code != 503 || strings.Contains(rec.Body.String(), "refused") {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}

// Case 97: a panic is 500 server_error JSON with no-store, no stack, and the security headers.
func TestPanicRecovery(t *testing.T) {
	s, _ := newTestServer(t, func(st store.Store) store.Store { return st })
	h := chain(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Leak", "partial")
		panic("boom: secret detail")
	}), withRequestID, s.observe, s.recoverPanic, withSecurityHeaders)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != 500 || rec.Body.String() != `{"error":"server_error","error_description":"internal error"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
	hd := rec.Header()
	if hd.Get("Cache-Control") != "no-store" || hd.Get("X-Leak") != "" || hd.Get("X-Frame-Options") != "DENY" || hd.Get("X-Request-Id") == "" {
		t.Fatalf("headers %v", hd)
	}
	// http.ErrAbortHandler is re-raised for net/http to handle.
	abort := chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }), s.recoverPanic)
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Fatalf("recovered %v", v)
		}
	}()
	abort.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
}

// A request stuck on the store ends at RequestTimeout with 503.
func TestRequestTimeoutMapsToUnavailable(t *testing.T) {
	s, secret := newTestServer(t, func(st store.Store) store.Store {
		return failingStore{Store: st, err: context.DeadlineExceeded}
	})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, ccRequest(secret))
	if rec.Code != 503 {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}

// Case 96: every timeout and the header limit are set.
func TestHTTPServerTimeouts(t *testing.T) {
	s, _ := newTestServer(t, func(st store.Store) store.Store { return st })
	hs := s.HTTPServer(":0")
	if hs.ReadHeaderTimeout == 0 || hs.ReadTimeout == 0 || hs.WriteTimeout == 0 || hs.IdleTimeout == 0 || hs.MaxHeaderBytes == 0 {
		t.Fatalf("unset limits: %+v", hs)
	}
	if RequestTimeout >= hs.WriteTimeout {
		t.Fatal("RequestTimeout must leave time to write the error")
	}
}

// Case 96: a client trickling its header or its body is disconnected. The limits are lowered
// here so the test is quick; the mechanism is the same.
func TestSlowClientsAreDisconnected(t *testing.T) {
	s, _ := newTestServer(t, func(st store.Store) store.Store { return st })
	hs := s.HTTPServer("127.0.0.1:0")
	hs.ReadHeaderTimeout = 200 * time.Millisecond
	hs.ReadTimeout = 400 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	for name, prefix := range map[string]string{
		"header": "POST /token HTTP/1.1\r\nHost: x\r\n",
		"body":   "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if _, err := conn.Write([]byte(prefix)); err != nil {
				t.Fatal(err)
			}
			// Trickle one byte at a time; the server must hang up long before we finish.
			closed := false
			for i := 0; i < 200 && !closed; i++ {
				time.Sleep(25 * time.Millisecond)
				if _, err := conn.Write([]byte("a")); err != nil {
					closed = true
				}
				_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				buf := make([]byte, 512)
				if n, err := conn.Read(buf); err == io.EOF || n > 0 {
					closed = true
				}
			}
			if !closed {
				t.Fatal("the server kept a trickling connection open")
			}
		})
	}
}

func TestNewValidatesOptions(t *testing.T) {
	st, _ := servertest.RedisStore(t)
	reader := servertest.NewReader()
	for _, iss := range []string{"", "auth.example", "ftp://auth.example", "https://auth.example/?x=1", "https://auth.example/#f",
		"https://user@auth.example", "https:///path"} {
		if _, err := New(Options{Issuer: iss, Namespace: "ns", Reader: reader, Store: st}); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
	if _, err := New(Options{Issuer: "https://auth.example", Reader: reader, Store: st}); err == nil {
		t.Error("no namespace accepted")
	}
	if _, err := New(Options{Issuer: "https://auth.example", Namespace: "ns", Store: st}); err == nil {
		t.Error("no reader accepted")
	}
	s, err := New(Options{Issuer: "https://auth.example/", Namespace: "ns", Reader: reader, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.SigningKey != DefaultSigningKey || s.opts.UsersSecret != DefaultUsersSecret || s.metadata.TokenEndpoint != "https://auth.example/token" ||
		s.metadata.Issuer != "https://auth.example/" {
		t.Fatalf("defaults: %+v %+v", s.opts, s.metadata)
	}
}
