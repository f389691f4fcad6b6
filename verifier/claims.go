package verifier

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/json"
)

// clientSubjectPrefix starts the "sub" of a token issued by the client_credentials grant:
// "client:<client_id>".
const clientSubjectPrefix = "client:"

// Claims are the claims of a verified access token. Only [Verifier.Verify] makes them, so holding
// a *Claims means the token passed every check. The accessors return copies: a handler cannot
// change what another handler sees.
type Claims struct {
	c       tokenClaims
	payload []byte
}

// tokenClaims is what Verify decodes, once, from the payload. go-jose's JSON decoder matches
// member names case-sensitively and rejects duplicated members, so "ISS" or a second "aud"
// cannot smuggle a value past the checks.
type tokenClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  audience     `json:"aud"`
	Expiry    *numericDate `json:"exp"`
	NotBefore *numericDate `json:"nbf"`
	IssuedAt  *numericDate `json:"iat"`
	ID        string       `json:"jti"`
	ClientID  string       `json:"client_id"`
	Scope     string       `json:"scope"`
	Roles     []string     `json:"roles"`
}

// Issuer is the "iss" claim; it always equals the configured issuer.
func (c *Claims) Issuer() string { return c.c.Issuer }

// Subject is the "sub" claim: the username for a user's token, "client:<client_id>" for a
// client_credentials token.
func (c *Claims) Subject() string { return c.c.Subject }

// ClientID is the "client_id" claim: the OAuth client the token was issued to.
func (c *Claims) ClientID() string { return c.c.ClientID }

// ID is the "jti" claim.
func (c *Claims) ID() string { return c.c.ID }

// Audience is the "aud" claim as a list (a single string becomes a list of one).
func (c *Claims) Audience() []string { return slices.Clone(c.c.Audience) }

// ExpiresAt is the "exp" claim.
func (c *Claims) ExpiresAt() time.Time { return c.c.Expiry.time() }

// IssuedAt is the "iat" claim.
func (c *Claims) IssuedAt() time.Time { return c.c.IssuedAt.time() }

// NotBefore is the "nbf" claim, or the zero time when the token has none.
func (c *Claims) NotBefore() time.Time { return c.c.NotBefore.time() }

// Scopes are the space-separated values of the "scope" claim (RFC 9068 §2.2.3).
func (c *Claims) Scopes() []string { return strings.Fields(c.c.Scope) }

// HasScope reports whether the "scope" claim contains scope exactly (case-sensitive, as
// RFC 6749 §3.3 requires).
func (c *Claims) HasScope(scope string) bool {
	if scope == "" {
		return false
	}
	for s := range strings.FieldsSeq(c.c.Scope) {
		if s == scope {
			return true
		}
	}
	return false
}

// Roles is the "roles" claim: the user's roles. Client tokens have none.
func (c *Claims) Roles() []string { return slices.Clone(c.c.Roles) }

// HasRole reports whether the "roles" claim contains role exactly.
func (c *Claims) HasRole(role string) bool {
	return role != "" && slices.Contains(c.c.Roles, role)
}

// IsClient reports whether the token was issued to a client acting on its own behalf (the
// client_credentials grant): "sub" is "client:<client_id>" and there are no roles.
func (c *Claims) IsClient() bool {
	return len(c.c.Roles) == 0 &&
		strings.HasPrefix(c.c.Subject, clientSubjectPrefix) &&
		c.c.Subject[len(clientSubjectPrefix):] == c.c.ClientID
}

// Raw decodes every claim of the token into a new map, for claims without an accessor. Numbers
// are float64, as with encoding/json. Each call returns a fresh map.
func (c *Claims) Raw() map[string]any {
	var m map[string]any
	// The payload decoded into tokenClaims before, so it is a JSON object and cannot fail here.
	_ = json.Unmarshal(c.payload, &m)
	return m
}

// errClaimType marks a claim of the wrong JSON type.
var errClaimType = errors.New("claim has the wrong type")

// numericDate is a JWT NumericDate (RFC 7519 §2): a JSON number of seconds since the epoch. A
// string such as "9999999999" is refused rather than converted.
type numericDate struct{ t time.Time }

// maxNumericDate is the end of year 9999; later dates only serve to overflow arithmetic.
const maxNumericDate = 253402300799

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errClaimType
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return errClaimType
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9))
	return nil
}

func (d *numericDate) time() time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.t
}

// audience is the "aud" claim: a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return errClaimType
	}
	switch b[0] {
	case '"':
		// Fast path: a plain string needs no second decoder.
		if n := len(b); n >= 2 && b[n-1] == '"' && bytes.IndexByte(b[1:n-1], '\\') < 0 && bytes.IndexByte(b[1:n-1], '"') < 0 {
			*a = audience{string(b[1 : n-1])}
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	case '[':
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
		*a = list
		return nil
	case 'n':
		*a = nil
		return nil
	}
	return errClaimType
}

// contains reports whether aud is one of the values, compared exactly.
func (a audience) contains(aud string) bool {
	return aud != "" && slices.Contains(a, aud)
}
