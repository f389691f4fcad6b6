// Package redirect decides whether a redirect_uri in an authorization request may be used.
//
// The rule is exact string comparison (OAuth 2.1 §2.3.1 and §4.1.1, RFC 9700 §4.1.3): no
// normalisation, no case folding, no trailing-slash leniency, no prefix or pattern match. Every
// one of those has been an open-redirect or code-theft bug in some server. The single exception
// is a loopback redirect for native apps (RFC 8252 §7.3, OAuth 2.1 §8.4.2): a registered
// http://127.0.0.1 or http://[::1] URI matches a request on any port, because the app picks a
// free port at run time. "localhost" gets no exception (RFC 8252 §8.3: it can resolve to a
// non-loopback address, and a firewall may treat it differently).
//
// Nothing here ever redirects. A caller that gets an error must answer with an error page of its
// own, never a redirect to the unverified URI (OAuth 2.1 §4.1.2.1, SECURITY-CASES 1, 4 and 5).
package redirect

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// MaxLength is the longest redirect URI accepted, the same bound as the OAuthClient CRD.
const MaxLength = 2048

// The loopback prefixes that get any-port matching. The scheme and host are compared as exact
// bytes, so "HTTP://127.0.0.1" or "http://127.000.000.001" are not loopback redirects here.
var loopbackPrefixes = []string{"http://127.0.0.1", "http://[::1]"}

// Errors of Resolve. Each one means: show an error page, do not redirect.
var (
	// ErrNotRegistered: the requested redirect_uri matches none of the client's.
	ErrNotRegistered = errors.New("redirect: redirect_uri is not registered for this client")
	// ErrAmbiguous: the request has no redirect_uri and the client has more than one
	// (OAuth 2.1 §2.3.2).
	ErrAmbiguous = errors.New("redirect: redirect_uri is required when the client has more than one")
	// ErrNoneRegistered: the client has no redirect URI at all.
	ErrNoneRegistered = errors.New("redirect: the client has no registered redirect_uri")
)

// ErrInvalid marks a URI that breaks a rule of Validate.
var ErrInvalid = errors.New("redirect: invalid redirect URI")

// Match reports whether requested may be used as a redirect for a client whose registered
// redirect URIs are registered, and returns the URI to redirect to: requested itself, which
// equals the matching registered URI except, for a loopback URI, in its port. Bind the code to
// that returned value.
//
// A registered URI that breaks a rule of Validate never matches. The API server rejects such a
// URI already, but objects read in --dev mode never passed through it.
func Match(registered []string, requested string) (string, bool) {
	if requested == "" || len(requested) > MaxLength {
		return "", false
	}
	for _, r := range registered {
		if Validate(r) != nil {
			continue
		}
		if r == requested {
			return requested, true
		}
		if loopbackMatch(r, requested) {
			return requested, true
		}
	}
	return "", false
}

// Resolve picks the redirect URI of an authorization request. requested is the redirect_uri
// parameter, "" when absent. With it absent, a client with exactly one registered URI uses that
// one and a client with more gets ErrAmbiguous (OAuth 2.1 §2.3.2; SECURITY-CASES 4). Every error
// means an error page, never a redirect.
//
// When requested was absent the token request may omit redirect_uri too (OAuth 2.1 §4.1.3), so
// record whether it was sent, not only the URI Resolve returns.
func Resolve(registered []string, requested string) (string, error) {
	if requested != "" {
		if uri, ok := Match(registered, requested); ok {
			return uri, nil
		}
		return "", ErrNotRegistered
	}
	switch len(registered) {
	case 0:
		return "", ErrNoneRegistered
	case 1:
		if err := Validate(registered[0]); err != nil {
			return "", fmt.Errorf("%w: %w", ErrNotRegistered, err)
		}
		return registered[0], nil
	default:
		return "", ErrAmbiguous
	}
}

// IsLoopback reports whether uri is an http://127.0.0.1 or http://[::1] redirect, with or
// without a port, the kind that matches on any port.
func IsLoopback(uri string) bool {
	_, _, _, ok := splitLoopback(uri)
	return ok
}

// loopbackMatch reports whether requested is the registered loopback URI on some port: the same
// prefix (scheme and literal host) and the same path and query, byte for byte (RFC 8252 §7.3).
func loopbackMatch(registered, requested string) bool {
	rHost, _, rRest, ok := splitLoopback(registered)
	if !ok {
		return false
	}
	qHost, _, qRest, ok := splitLoopback(requested)
	return ok && rHost == qHost && rRest == qRest
}

// splitLoopback splits a loopback redirect into its scheme-and-host prefix, its port ("" when
// absent) and the rest (path and query). The rest must be empty or start with "/" or "?", so that
// "http://127.0.0.1.evil.com/", "http://127.0.0.1@evil.com/" and "http://127.0.0.1:80@evil.com/"
// are not loopback URIs. Fragments, backslashes and control characters are refused outright:
// browsers treat them in ways that differ from the exact string.
func splitLoopback(uri string) (host, port, rest string, ok bool) {
	for _, p := range loopbackPrefixes {
		if !strings.HasPrefix(uri, p) {
			continue
		}
		host, rest = p, uri[len(p):]
		if strings.HasPrefix(rest, ":") {
			end := 1
			for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
				end++
			}
			port, rest = rest[1:end], rest[end:]
			if !validPort(port) {
				return "", "", "", false
			}
		}
		if rest != "" && rest[0] != '/' && rest[0] != '?' {
			return "", "", "", false
		}
		if strings.ContainsAny(rest, "#\\@") || hasControlOrSpace(rest) {
			return "", "", "", false
		}
		return host, port, rest, true
	}
	return "", "", "", false
}

// validPort accepts 1 to 65535 written without leading zeros, the only spelling a browser sends
// back unchanged.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

func hasControlOrSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// The CEL rules of OAuthClientSpec.redirectURIs in api/v1alpha1/oauthclient_types.go, in the same
// order and with the same messages; TestValidateMirrorsTheCRD keeps the two lists in step.
var (
	absoluteRe      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:[^ ]+$`)
	reverseDomainRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+-]*[.][A-Za-z0-9+.-]+:`)
)

// rule is one CEL rule and its Go twin. cel is the rule's exact text in the CRD, so the test can
// tell when the CRD changed and this file did not.
type rule struct {
	cel     string
	message string
	ok      func(uri, lower string) bool
}

var rules = []rule{
	{
		cel:     `!self.contains('#')`,
		message: "a redirect URI must not contain a fragment",
		ok:      func(u, _ string) bool { return !strings.Contains(u, "#") },
	},
	{
		cel:     `!self.contains('*')`,
		message: "a redirect URI must not contain a wildcard",
		ok:      func(u, _ string) bool { return !strings.Contains(u, "*") },
	},
	{
		cel:     `self.matches('^[A-Za-z][A-Za-z0-9+.-]*:[^ ]+$')`,
		message: "a redirect URI must be absolute and contain no spaces",
		ok:      func(u, _ string) bool { return absoluteRe.MatchString(u) },
	},
	{
		cel:     `!self.lowerAscii().startsWith('http:') || (isURL(self) && url(self).getHostname() in ['127.0.0.1', '::1'])`,
		message: "http is only allowed for a loopback redirect (127.0.0.1 or [::1])",
		ok: func(u, l string) bool {
			if !strings.HasPrefix(l, "http:") {
				return true
			}
			h, ok := celHostname(u)
			return ok && (h == "127.0.0.1" || h == "::1")
		},
	},
	{
		cel:     `!self.lowerAscii().startsWith('https:') || (isURL(self) && size(url(self).getHostname()) > 0)`,
		message: "an https redirect URI needs a host",
		ok: func(u, l string) bool {
			if !strings.HasPrefix(l, "https:") {
				return true
			}
			h, ok := celHostname(u)
			return ok && h != ""
		},
	},
	{
		cel:     `self.lowerAscii().startsWith('http:') || self.lowerAscii().startsWith('https:') || self.matches('^[A-Za-z][A-Za-z0-9+-]*[.][A-Za-z0-9+.-]+:')`,
		message: "a private-use URI scheme must be a reverse domain name such as com.example.app (RFC 8252 §7.1)",
		ok: func(u, l string) bool {
			return strings.HasPrefix(l, "http:") || strings.HasPrefix(l, "https:") || reverseDomainRe.MatchString(u)
		},
	},
}

// Validate applies the rules the OAuthClient CRD enforces on each of spec.redirectURIs with CEL,
// so that tests, docs and --dev mode (whose objects never reach an API server) share them: at
// most MaxLength bytes, no fragment (OAuth 2.1 §2.3.1), no wildcard, absolute, http only for a
// loopback IP (RFC 8252 §8.3), https with a host, and a private-use scheme in reverse-domain
// form (RFC 8252 §7.1). The error wraps ErrInvalid and carries the CRD's message.
func Validate(uri string) error {
	if len(uri) > MaxLength {
		return fmt.Errorf("%w: a redirect URI must be at most %d bytes", ErrInvalid, MaxLength)
	}
	lower := lowerASCII(uri)
	for _, r := range rules {
		if !r.ok(uri, lower) {
			return fmt.Errorf("%w: %s", ErrInvalid, r.message)
		}
	}
	return nil
}

// celHostname is what the CEL expression `isURL(self) && url(self).getHostname()` computes:
// Kubernetes' CEL URL library parses with url.ParseRequestURI and returns URL.Hostname().
func celHostname(uri string) (string, bool) {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", false
	}
	return u.Hostname(), true
}

// lowerASCII is CEL's lowerAscii: only A-Z change, so no Unicode case mapping can turn some other
// character into "http:".
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
