package server

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/oautherr"
)

// middleware wraps a handler.
type middleware func(http.Handler) http.Handler

// chain applies mws so that the first is the outermost.
func chain(h http.Handler, mws ...middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// requestInfo is what a request's handler tells the log and metrics middleware: which endpoint
// served it, for which grant and client, with which outcome. Handlers fill it through
// infoFrom; it never holds a token or secret.
type requestInfo struct {
	endpoint string
	grant    string
	clientID string
	// outcome is "ok" or the OAuth error code; empty means "derive it from the status".
	outcome string
	// cause is the logged-only reason of an error.
	cause error
}

type requestInfoKey struct{}

// infoFrom returns the request's info; a throwaway one outside the middleware (in unit tests
// of a bare handler), so handlers never check for nil.
func infoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// endpoint names the endpoint of a route for logs and metrics (a fixed set of labels).
func endpoint(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).endpoint = name
		h.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status.
func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withRequestID gives every request an id, echoed in X-Request-Id: the caller's when it is a
// short token of safe characters, else a new random one.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(httpx.RequestIDHeader)
		if !httpx.ValidRequestID(id) {
			id = httpx.NewRequestID()
		}
		w.Header().Set(httpx.RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(httpx.WithRequestID(r.Context(), id)))
	})
}

// observe logs every request as one key/value record and feeds the metrics. It logs the path
// but never the query, headers or body, where tokens and secrets travel.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{endpoint: "other"}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))

		elapsed := time.Since(start)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		outcome := info.outcome
		if outcome == "" {
			outcome = outcomeOf(status)
		}
		s.metrics.observe(info.endpoint, info.grant, outcome, elapsed)

		failed := outcome == "server_error" || outcome == "temporarily_unavailable"
		// A request that succeeded is logged at V(1): at thousands of tokens a second an
		// info line each (a write(2) per line) cost more CPU than anything but the signature,
		// and the metrics count them anyway. Failures and refusals stay at info and error.
		lg := s.log
		if outcome == "ok" {
			lg = s.log.V(1)
		}
		if !failed && !lg.Enabled() {
			return
		}
		kv := []any{
			"method", r.Method,
			"path", r.URL.Path,
			"status", status,
			"endpoint", info.endpoint,
			"outcome", outcome,
			"durationMs", strconv.FormatFloat(float64(elapsed.Microseconds())/1000, 'f', 3, 64),
			"requestID", httpx.RequestID(r.Context()),
			"remoteAddr", httpx.ClientIP(r, s.opts.TrustedProxies).String(),
		}
		if info.grant != "" {
			kv = append(kv, "grant", info.grant)
		}
		if info.clientID != "" {
			kv = append(kv, "clientID", info.clientID)
		}
		if failed {
			s.log.Error(info.cause, "Request failed", kv...)
			return
		}
		if info.cause != nil {
			kv = append(kv, "reason", info.cause.Error())
		}
		lg.Info("Request served", kv...)
	})
}

func outcomeOf(status int) string {
	switch {
	case status < http.StatusBadRequest:
		return "ok"
	case status < http.StatusInternalServerError:
		return "client_error"
	default:
		return "server_error"
	}
}

// recoverPanic turns a panic into 500 server_error JSON without details (SECURITY-CASES 97).
// The stack goes to the log. http.ErrAbortHandler is re-raised, as net/http expects.
func (s *Server) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			info := infoFrom(r.Context())
			info.cause = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
			info.outcome = oautherr.CodeServerError
			if rec.status != 0 {
				return // the response has started; the connection is all we could still break
			}
			h := w.Header()
			for k := range h {
				if k != httpx.RequestIDHeader && !securityHeader(k) {
					h.Del(k)
				}
			}
			// The returned *Error is the server_error already recorded in info.outcome above.
			_ = oautherr.Write(w, oautherr.ServerError(nil), s.issuer)
		}()
		next.ServeHTTP(rec, r)
	})
}

// securityHeaders are sent on every response. JSON gets CSP default-src 'none'; HTML handlers
// (the code flow's pages) set their own Content-Security-Policy, which replaces this one.
var securityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"X-Frame-Options":         "DENY",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

// securityHeaderValues are securityHeaders as header values, built once: every response
// shares them rather than allocating a slice per header per request. Sharing is safe because
// a handler that changes one replaces the slice (Set, Del), and Add appends to a slice whose
// capacity is its length, so a new array is made.
var securityHeaderValues = func() map[string][]string {
	m := make(map[string][]string, len(securityHeaders))
	for k, v := range securityHeaders {
		m[http.CanonicalHeaderKey(k)] = []string{v}
	}
	return m
}()

func securityHeader(canonical string) bool {
	_, ok := securityHeaders[canonical]
	return ok
}

func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range securityHeaderValues {
			h[k] = v
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps every request body at httpx.MaxFormBytes, whoever reads it.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// requestTimeout bounds the work of one request, store round trips included: a hung Redis
// (DEBUG SLEEP, CLIENT PAUSE, an exhausted pool) ends in 503 temporarily_unavailable at the
// deadline instead of holding the connection (SECURITY-CASES 84). It is shorter than
// WriteTimeout so the error can still be written.
func requestTimeout(d time.Duration) middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// noStore marks responses as uncacheable: every token endpoint response, success or error
// (RFC 6749 §5.1, OAuth 2.1 §3.2.3).
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.SetNoStore(w.Header())
		next.ServeHTTP(w, r)
	})
}

// methodNotAllowed answers any other method on a POST-only endpoint: 405 with Allow
// (OAuth 2.1 §3.2, SECURITY-CASES 95), as an invalid_request JSON body.
func (s *Server) methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoFrom(r.Context())
		info.outcome = oautherr.CodeInvalidRequest
		w.Header().Set("Allow", allow)
		httpx.WriteJSON(w, http.StatusMethodNotAllowed,
			oautherr.InvalidRequest("method not allowed; use "+allow).Body(), true)
	})
}
