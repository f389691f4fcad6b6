package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// WriteJSON sends v as JSON with status. Responses that carry tokens or token metadata pass
// noStore, which adds Cache-Control: no-store and Pragma: no-cache (RFC 6749 §5.1, RFC 7662 §2.2).
func WriteJSON(w http.ResponseWriter, status int, v any, noStore bool) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; they always marshal.
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	WriteJSONBody(w, status, append(b, '\n'), noStore)
}

// WriteJSONBody is WriteJSON for a body already encoded (by a hand-written encoder of a fixed
// response shape); body should end with a newline, as WriteJSON's do.
func WriteJSONBody(w http.ResponseWriter, status int, body []byte, noStore bool) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if noStore {
		SetNoStore(h)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// bodies holds the buffers of WriteJSONAppend: a response body is garbage once written.
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBody bounds the buffers kept in bodies.
const maxPooledBody = 16 << 10

// WriteJSONAppend is WriteJSONBody for a body that appendBody appends to a buffer: the buffer
// is reused by later responses once this one is written.
func WriteJSONAppend(w http.ResponseWriter, status int, noStore bool, appendBody func([]byte) []byte) {
	bp := bodies.Get().(*[]byte)
	*bp = appendBody((*bp)[:0])
	WriteJSONBody(w, status, *bp, noStore)
	if cap(*bp) <= maxPooledBody {
		bodies.Put(bp)
	}
}

// Header values shared by every response rather than allocated per response. A handler that
// changes one replaces the slice (Set, Del); Add appends to a slice whose capacity is its
// length, so a new array is made: the shared ones are never written.
var (
	jsonContentType = []string{"application/json"}
	noStoreValue    = []string{"no-store"}
	noCacheValue    = []string{"no-cache"}
)

// SetNoStore marks a response uncacheable: Cache-Control: no-store and, for HTTP/1.0 caches,
// Pragma: no-cache (RFC 6749 §5.1, OAuth 2.1 §3.2.3).
func SetNoStore(h http.Header) {
	h["Cache-Control"] = noStoreValue
	h["Pragma"] = noCacheValue
}

// ClientIP is the address of the client that sent r. X-Forwarded-For is honoured only when the
// connection comes from a trusted proxy, and then only as far as the chain of trusted proxies
// reaches: the right-most address that is not itself a trusted proxy is the client
// (RFC 9700 §4.13: a spoofed header from outside must not choose the address that rate limits
// and logs see).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A garbled hop ends the chain we can believe.
				return addr
			}
			addr = a.Unmap()
			if !isTrusted(addr, trusted) {
				return addr
			}
		}
	}
	return addr
}

func remoteAddr(s string) netip.Addr {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type requestIDKey struct{}

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

// NewRequestID returns 16 random bytes in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidRequestID reports whether an incoming request id is safe to log and echo: 1 to 64
// characters of [A-Za-z0-9._-].
func ValidRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isRequestIDChar(s[i]) {
			return false
		}
	}
	return true
}

// isRequestIDChar reports whether c is in [A-Za-z0-9._-], the request id alphabet.
func isRequestIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// WithRequestID stores id in ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id of ctx, "" when none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
