package verifier

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4/json"
)

// maxMetadataSize bounds the discovery document.
const maxMetadataSize = 1 << 20

// metadata is the part of the authorization server metadata (RFC 8414 §2) the verifier uses.
type metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// discover fetches the issuer's metadata. RFC 8414 §3 inserts the well-known segment between
// the host and the issuer's path; for an issuer with a path, the OpenID-style location (the
// segment appended) is tried second. Either way the document's issuer must equal ours exactly
// (RFC 8414 §3.3), or an attacker-controlled document could name its own keys.
func discover(ctx context.Context, client *http.Client, issuer string) (*metadata, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	const wellKnown = "/.well-known/oauth-authorization-server"
	path := strings.TrimSuffix(u.Path, "/")
	rfc := *u
	rfc.Path, rfc.RawPath = wellKnown+path, ""
	urls := []string{rfc.String()}
	if path != "" {
		urls = append(urls, strings.TrimSuffix(issuer, "/")+wellKnown)
	}
	var lastErr error
	for _, mdURL := range urls {
		body, _, err := getJSON(ctx, client, mdURL, maxMetadataSize)
		if err != nil {
			lastErr = err
			continue
		}
		var md metadata
		if err := json.Unmarshal(body, &md); err != nil {
			return nil, fmt.Errorf("discover: parse %s: %w", mdURL, err)
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("discover: metadata issuer %q is not %q", md.Issuer, issuer)
		}
		if err := checkEndpoint(md.JWKSURI); err != nil {
			return nil, fmt.Errorf("discover: jwks_uri: %w", err)
		}
		return &md, nil
	}
	return nil, fmt.Errorf("discover: %w", lastErr)
}

// checkEndpoint accepts an absolute http or https URL without a fragment.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// checkIssuer enforces RFC 8414 §2: an https (or, for development and in-cluster use, http) URL
// with a host and no query or fragment.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("issuer %q must be an http(s) URL with a host and no query or fragment", s)
	}
	return nil
}
