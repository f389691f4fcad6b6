package clients

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// maxBasicHeader bounds the Authorization header before it is decoded.
const maxBasicHeader = 4 << 10

// ErrBasicMalformed: the Authorization header is not Basic credentials we can decode.
var ErrBasicMalformed = errors.New("malformed basic credentials")

// IsBasic reports whether an Authorization header value uses the Basic scheme (scheme names
// are case-insensitive, RFC 9110 §11.1).
func IsBasic(header string) bool {
	scheme, _, _ := strings.Cut(header, " ")
	return strings.EqualFold(scheme, "Basic")
}

// ParseBasic decodes "Basic base64(id:secret)" where id and secret were each
// application/x-www-form-urlencoded before the Basic encoding (RFC 6749 §2.3.1 and Appendix B):
// "+" decodes to a space and "%XX" to a byte. Plain HTTP Basic clients that did not form-encode
// still work unless their id or secret contains '+' or '%'. The id and secret must be non-empty
// valid UTF-8.
func ParseBasic(header string) (id, secret string, err error) {
	if len(header) > maxBasicHeader {
		return "", "", ErrBasicMalformed
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", ErrBasicMalformed
	}
	token = strings.TrimLeft(token, " ")
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		// Some clients leave out the padding.
		if raw, err = base64.RawStdEncoding.DecodeString(token); err != nil {
			return "", "", ErrBasicMalformed
		}
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", ErrBasicMalformed
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", ErrBasicMalformed
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", ErrBasicMalformed
	}
	if id == "" || secret == "" || !utf8.ValidString(id) || !utf8.ValidString(secret) {
		return "", "", ErrBasicMalformed
	}
	return id, secret, nil
}

// EncodeBasic is the Authorization header value for id and secret, form-encoded first as
// RFC 6749 §2.3.1 asks. ParseBasic(EncodeBasic(id, secret)) returns id and secret.
func EncodeBasic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}
