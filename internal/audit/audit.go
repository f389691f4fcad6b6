// Package audit is Latchkey's audit stream: one structured log record per security event, with
// a stable event name, in a logger named "audit", and the Prometheus counter of each event.
// Both the token server and the controllers emit through it, so it lives outside both.
//
// A record carries the event name and, where there is one, the client_id, the subject (the
// user, or "client:<id>" for a client's own token), the refresh-token family and the request
// id; never a token, code, secret or password. The names are part of Latchkey's interface:
// docs/observability.md lists them, and alerts and SIEM rules may match on them.
package audit

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkey-dev/latchkey/internal/promreg"
)

// The event names: snake_case, like the names SECURITY-CASES and the earlier log lines use
// (refresh_token_reuse_detected, authorization_code_reuse_detected).
const (
	// TokenIssued: the token endpoint issued an access token (any grant).
	TokenIssued = "token_issued"
	// RefreshRotated: a refresh token was exchanged for its successor.
	RefreshRotated = "refresh_token_rotated"
	// RefreshReuseDetected: a used refresh token was presented again; its family is revoked.
	RefreshReuseDetected = "refresh_token_reuse_detected"
	// CodeReuseDetected: a redeemed authorization code was presented again by its client; what
	// the first redemption issued is revoked (OAuth 2.1 §4.1.3).
	CodeReuseDetected = "authorization_code_reuse_detected"
	// TokenRevoked: a token was revoked at the revocation endpoint.
	TokenRevoked = "token_revoked"
	// LoginSucceeded: a user signed in with a password.
	LoginSucceeded = "login_succeeded"
	// LoginFailed: a wrong username or password, or a login refused by the brute-force limit.
	LoginFailed = "login_failed"
	// ConsentGiven: a user allowed a client the requested scopes.
	ConsentGiven = "consent_given"
	// ConsentDenied: a user denied a client.
	ConsentDenied = "consent_denied"
	// ClientSecretRotated: the controller replaced a client's generated secret on request.
	ClientSecretRotated = "client_secret_rotated"
	// KeyRotated: a signing key became the Active key.
	KeyRotated = "signing_key_rotated"
)

// Names lists every event name, in documentation order.
var Names = []string{
	TokenIssued, RefreshRotated, RefreshReuseDetected, CodeReuseDetected, TokenRevoked, LoginSucceeded, LoginFailed,
	ConsentGiven, ConsentDenied, ClientSecretRotated, KeyRotated,
}

// LoggerName is the name of the audit logger (the logr name, shown as logger="audit") and the
// message of every audit record.
const LoggerName = "audit"

// Attribute keys of a record.
const (
	KeyEvent     = "event"
	KeyClient    = "client_id"
	KeySubject   = "subject"
	KeyFamily    = "family"
	KeyRequestID = "request_id"
)

// Event is one audit record. Empty fields are left out.
type Event struct {
	// Name is one of the constants above.
	Name      string
	ClientID  string
	Subject   string
	Family    string
	RequestID string
	// Attrs are further fields (the grant, a reason, a key id, an object name). Never a token,
	// code, secret or password.
	Attrs []slog.Attr
}

// Logger writes the audit stream and counts its events. A nil *Logger discards everything, so
// a component built without one still works.
type Logger struct {
	log      *slog.Logger
	counters map[string]prometheus.Counter
}

// New returns a Logger writing to h and registering its counters on reg (nil: not exported).
// Registering on a registry that already holds them (the server and the controllers of one
// process) shares the series.
//
// Three events are counted by counters that existed before this package and are not
// duplicated: token_issued (latchkey_server_tokens_issued_total{grant}), token.revoked
// (latchkey_server_tokens_revoked_total{token_type}) and refresh_token_reuse_detected
// (latchkey_server_refresh_token_reuse_total{client}). The others get theirs here.
func New(h slog.Handler, reg prometheus.Registerer) (*Logger, error) {
	rotated := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "server", Name: "refresh_tokens_rotated_total",
		Help: "Refresh tokens exchanged for their successor (audit event refresh_token_rotated).",
	})
	codeReuse := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "server", Name: "code_reuse_total",
		Help: "Authorization codes presented again, each of which revoked its grant (audit event authorization_code_reuse_detected).",
	})
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "server", Name: "logins_total",
		Help: "Password logins by result: succeeded or failed (audit events login_*).",
	}, []string{"result"})
	consents := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "server", Name: "consents_total",
		Help: "Consent decisions by decision: given or denied (audit events consent_*).",
	}, []string{"decision"})
	secrets := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "controller", Name: "client_secret_rotations_total",
		Help: "Generated client secrets replaced on request (audit event client_secret_rotated).",
	})
	keys := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "latchkey", Subsystem: "controller", Name: "signing_key_rotations_total",
		Help: "Signing keys that became Active (audit event signing_key_rotated).",
	})
	if reg != nil {
		var err error
		if rotated, err = promreg.Register(reg, rotated); err != nil {
			return nil, err
		}
		if codeReuse, err = promreg.Register(reg, codeReuse); err != nil {
			return nil, err
		}
		if logins, err = promreg.Register(reg, logins); err != nil {
			return nil, err
		}
		if consents, err = promreg.Register(reg, consents); err != nil {
			return nil, err
		}
		if secrets, err = promreg.Register(reg, secrets); err != nil {
			return nil, err
		}
		if keys, err = promreg.Register(reg, keys); err != nil {
			return nil, err
		}
	}
	return &Logger{
		log: slog.New(h),
		counters: map[string]prometheus.Counter{
			RefreshRotated:      rotated,
			CodeReuseDetected:   codeReuse,
			LoginSucceeded:      logins.WithLabelValues("succeeded"),
			LoginFailed:         logins.WithLabelValues("failed"),
			ConsentGiven:        consents.WithLabelValues("given"),
			ConsentDenied:       consents.WithLabelValues("denied"),
			ClientSecretRotated: secrets,
			KeyRotated:          keys,
		},
	}, nil
}

// FromLogr is New with a handler that writes to log under the name "audit", so the audit
// records go wherever the component's logs go, marked logger="audit".
func FromLogr(log logr.Logger, reg prometheus.Registerer) (*Logger, error) {
	return New(logr.ToSlogHandler(log.WithName(LoggerName)), reg)
}

// Emit writes e and counts it.
func (l *Logger) Emit(ctx context.Context, e Event) {
	if l == nil {
		return
	}
	if c := l.counters[e.Name]; c != nil {
		c.Inc()
	}
	attrs := make([]slog.Attr, 0, 5+len(e.Attrs))
	attrs = append(attrs, slog.String(KeyEvent, e.Name))
	for _, f := range [...]struct{ k, v string }{
		{KeyClient, e.ClientID}, {KeySubject, e.Subject}, {KeyFamily, e.Family}, {KeyRequestID, e.RequestID},
	} {
		if f.v != "" {
			attrs = append(attrs, slog.String(f.k, f.v))
		}
	}
	attrs = append(attrs, e.Attrs...)
	l.log.LogAttrs(ctx, slog.LevelInfo, LoggerName, attrs...)
}
