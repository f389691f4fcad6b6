package ui

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// SetPageHeaders sets the security headers every HTML page of the authorization flow carries
// (SECURITY-CASES 16):
//
//   - Content-Security-Policy: ContentSecurityPolicy(formTargets...): nothing loads but our
//     own stylesheet, no script runs, no page may frame us;
//   - X-Frame-Options: DENY, for browsers that predate frame-ancestors (RFC 9700 §4.16);
//   - Referrer-Policy: no-referrer, so the page's URL (request id, state) never leaves in a
//     Referer (RFC 9700 §4.2.4);
//   - X-Content-Type-Options: nosniff;
//   - Cache-Control: no-store, so a shared machine's back button or cache does not keep a
//     login form with a live CSRF token.
//
// formTargets are the redirect URIs a form on the page can end up at after its POST (the
// client's verified redirect_uri); see ContentSecurityPolicy. Call it with none for pages
// without a form, and for redirects and errors that are not rendered by Render.
//
// It sets no Cross-Origin-Opener-Policy on purpose: a client that opened the login in a popup
// needs window.opener when the popup returns to its own origin.
func SetPageHeaders(h http.Header, formTargets ...string) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy(formTargets...))
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// ContentSecurityPolicy returns the pages' policy:
//
//	default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' [targets];
//	frame-ancestors 'none'; script-src 'self'; base-uri 'none'
//
// form-action is 'self' plus, for each of formTargets, the narrowest CSP source that matches it:
// its origin ("https://app.example.com", "http://127.0.0.1:51004"), or its scheme alone for a
// private-use URI ("com.example.app:", RFC 8252 §7.1) and for an IPv6 literal, which CSP's
// host-source grammar cannot express ("http:" for http://[::1]:port). Browsers apply
// form-action to every redirect after a form post (CSP3 §6.4.2), so without the target the 303
// to the client is blocked. A target that yields no safe source (unparseable, a host CSP cannot
// spell such as a non-punycode IDN, or a javascript: or data: URI) is left out, which fails
// closed: the redirect is blocked.
func ContentSecurityPolicy(formTargets ...string) string {
	formAction := []string{"'self'"}
	for _, t := range formTargets {
		if src, ok := formActionSource(t); ok && !slices.Contains(formAction, src) {
			formAction = append(formAction, src)
		}
	}
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action " +
		strings.Join(formAction, " ") +
		"; frame-ancestors 'none'; script-src 'self'; base-uri 'none'"
}

// schemesNeverAllowed could run script or carry content if a form could post to them.
var schemesNeverAllowed = []string{"javascript", "data", "blob", "filesystem", "vbscript", "about", "file"}

// formActionSource returns the CSP source expression (CSP3 §2.3.1) that matches uri.
func formActionSource(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || !validScheme(u.Scheme) {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if slices.Contains(schemesNeverAllowed, scheme) {
		return "", false
	}
	if scheme != "http" && scheme != "https" {
		return scheme + ":", true
	}
	host := u.Hostname()
	if host == "" {
		return "", false
	}
	if strings.Contains(host, ":") {
		// An IPv6 literal such as [::1] (RFC 8252 §7.3 loopback): CSP has no syntax for it, and
		// Chromium ignores such a source, so only the scheme can be allowed.
		if net.ParseIP(host) == nil {
			return "", false
		}
		return scheme + ":", true
	}
	if !validCSPHost(host) {
		// Anything else CSP cannot spell (an internationalised name not in its xn-- form, a
		// stray character) is left out rather than widened to the whole scheme.
		return "", false
	}
	src := scheme + "://" + strings.ToLower(host)
	if port := u.Port(); port != "" {
		if !allDigits(port) {
			return "", false
		}
		src += ":" + port
	}
	return src, true
}

// validScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
func validScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validCSPHost: host-part = 1*host-char *( "." 1*host-char ), host-char = ALPHA / DIGIT / "-".
// Checking it keeps anything that could end the directive (";", ",", space) out of the header.
func validCSPHost(h string) bool {
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlpha(c) && !isDigit(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// redirectHost is what the consent page names as the destination: the host (and port) of an
// http(s) URI, or the scheme of a private-use one, "" when uri says nothing usable.
func redirectHost(uri string) string {
	if uri == "" {
		return ""
	}
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return u.Host
	case "":
		return ""
	default:
		return u.Scheme
	}
}
