// Package oautherr holds the OAuth 2.0 error responses of the token server (RFC 6749 §5.2,
// RFC 7009 §2.2.1, RFC 7662 §2.3) as values, and the one place where an error becomes an HTTP
// status.
//
// Errors are built fresh for every request (never shared package-level values that a caller
// could mutate) and carry an optional cause that is logged but never sent. Everything a handler
// returns goes through From, so a store outage becomes 503 temporarily_unavailable and any
// unexpected error becomes 500 server_error without details, never a leaked message.
package oautherr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/latchkey-dev/latchkey/server/store"
)

// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1 and RFC 6749 §4.1.2.1
// (temporarily_unavailable, server_error).
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeInvalidScope            = "invalid_scope"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeAccessDenied            = "access_denied"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
)

// Error is one OAuth error response. Code and Description are sent; the cause is only logged.
type Error struct {
	// Code is the "error" member: one of the Code* constants.
	Code string
	// Description is the "error_description" member: a short human-readable hint that never
	// names a secret, a token or an internal detail. RFC 6749 §5.2 limits it to printable ASCII
	// without '"' and '\'; New enforces that.
	Description string

	cause error
}

// New builds an error with code and description. The description is cleaned to the character
// set RFC 6749 §5.2 allows, so a value echoed from a request can never break the JSON or a
// header.
func New(code, description string) *Error {
	return &Error{Code: code, Description: clean(description)}
}

// Error implements error. It includes the cause, for logs.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// Cause returns the logged-only cause, or nil.
func (e *Error) Cause() error { return e.cause }

// WithCause returns e with cause attached for the log. The cause never reaches the client.
func (e *Error) WithCause(cause error) *Error {
	e.cause = cause
	return e
}

// Status is the HTTP status of the error: the one mapping of the server.
//
//   - invalid_client: 401 (RFC 6749 §5.2; the writer adds WWW-Authenticate, RFC 9110 §15.5.2)
//   - server_error: 500
//   - temporarily_unavailable: 503 (a store outage, a cache that has not synced, no signing key)
//   - everything else: 400 (RFC 6749 §5.2)
func (e *Error) Status() int {
	switch e.Code {
	case CodeInvalidClient:
		return http.StatusUnauthorized
	case CodeServerError:
		return http.StatusInternalServerError
	case CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// InvalidRequest: a parameter is missing, repeated, malformed or not allowed (RFC 6749 §5.2).
func InvalidRequest(description string) *Error { return New(CodeInvalidRequest, description) }

// InvalidClient: client authentication failed. Callers pass the same description for an
// unknown client and a wrong credential, so the two cannot be told apart (OAuth 2.1 §3.2.4).
func InvalidClient(description string) *Error { return New(CodeInvalidClient, description) }

// InvalidGrant: the grant (code, refresh token) is invalid, expired, revoked, or belongs to
// another client.
func InvalidGrant(description string) *Error { return New(CodeInvalidGrant, description) }

// UnauthorizedClient: the client may not use this grant, or may not touch this token.
func UnauthorizedClient(description string) *Error {
	return New(CodeUnauthorizedClient, description)
}

// UnsupportedGrantType: the server does not implement the grant.
func UnsupportedGrantType(description string) *Error {
	return New(CodeUnsupportedGrantType, description)
}

// InvalidScope: the scope is malformed or exceeds what the client may ask for.
func InvalidScope(description string) *Error { return New(CodeInvalidScope, description) }

// UnsupportedTokenType: RFC 7009 §2.2.1.
func UnsupportedTokenType(description string) *Error {
	return New(CodeUnsupportedTokenType, description)
}

// ServerError: an unexpected failure. The cause is logged; the client sees only "internal
// error".
func ServerError(cause error) *Error {
	return New(CodeServerError, "internal error").WithCause(cause)
}

// Unavailable: a dependency is down (the store, the cache, the signing key). The client may
// retry (RFC 6749 §4.1.2.1 temporarily_unavailable, answered with 503).
func Unavailable(description string, cause error) *Error {
	return New(CodeTemporarilyUnavailable, description).WithCause(cause)
}

// From turns any error into the *Error to send. An *Error anywhere in the chain is used as is;
// store.ErrUnavailable and context deadlines become temporarily_unavailable; anything else is
// server_error, with err as the logged cause. From(nil) is nil.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return Unavailable("the service is temporarily unavailable, retry later", err)
	}
	return ServerError(err)
}

// Body is the JSON document of an error response (RFC 6749 §5.2).
type Body struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// Body returns the document to send.
func (e *Error) Body() Body { return Body{Error: e.Code, ErrorDescription: e.Description} }

// BasicChallenge is the WWW-Authenticate value that invalid_client carries: Basic is the one
// HTTP authentication scheme the token, introspection and revocation endpoints accept
// (RFC 6749 §2.3.1), and RFC 9110 §15.5.2 requires a challenge on every 401.
func BasicChallenge(realm string) string {
	return fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", clean(realm))
}

// clean keeps the characters RFC 6749 §5.2 allows in error_description: %x20-21 / %x23-5B /
// %x5D-7E. Others become '?'. It also bounds the length.
func clean(s string) string {
	const maxLen = 256
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if !allowed(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !allowed(c) {
			b[i] = '?'
		}
	}
	return string(b)
}

func allowed(c byte) bool {
	return c == 0x20 || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
}

// Write sends err as a JSON error response and returns the *Error it sent (for metrics and
// logs). Every error response carries Cache-Control: no-store and Pragma: no-cache
// (RFC 6749 §5.1, OAuth 2.1 §3.2.4), and invalid_client carries the Basic challenge of realm.
func Write(w http.ResponseWriter, err error, realm string) *Error {
	oe := From(err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if oe.Code == CodeInvalidClient {
		h.Set("WWW-Authenticate", BasicChallenge(realm))
	}
	w.WriteHeader(oe.Status())
	_ = json.NewEncoder(w).Encode(oe.Body())
	return oe
}
