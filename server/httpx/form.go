// Package httpx holds the HTTP plumbing of the token server that has no OAuth logic in it:
// strict form parsing, JSON responses, client addresses behind trusted proxies and request ids.
package httpx

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Limits of a form body. The defaults bound what one request can make the server allocate:
// Go's own form parser reads 10 MB and (since Go 1.24.12) 10 000 parameters, far more than an
// OAuth request needs (CVE-2025-61726).
const (
	// MaxFormBytes is the largest body the token, introspection and revocation endpoints read.
	MaxFormBytes = 64 << 10
	// MaxFormParams is the largest number of parameters they accept. A token request has about
	// ten.
	MaxFormParams = 64
)

// Errors of ReadForm and ParseForm. They are matched with errors.Is; the message of the
// *FormError around them names the parameter, never its value.
var (
	ErrMethod          = errors.New("method must be POST")
	ErrContentType     = errors.New("content type must be application/x-www-form-urlencoded")
	ErrQueryParameters = errors.New("parameters must be sent in the body, not the URL query")
	ErrBodyTooLarge    = errors.New("request body too large")
	ErrTooManyParams   = errors.New("too many parameters")
	ErrDuplicate       = errors.New("parameter repeated")
	ErrMalformed       = errors.New("malformed form body")
)

// FormError says what was wrong with a form.
type FormError struct {
	// Err is one of the Err* values.
	Err error
	// Param names the parameter at fault, when there is one.
	Param string
}

// Error names the problem and the parameter, never a value.
func (e *FormError) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Param)
	}
	return e.Err.Error()
}

// Unwrap returns the Err* value.
func (e *FormError) Unwrap() error { return e.Err }

// Form is a parsed application/x-www-form-urlencoded body in which every parameter appears at
// most once (RFC 6749 §3.1) and no value is empty: a parameter sent without a value is treated
// as omitted (RFC 6749 §3.1).
type Form map[string]string

// Get returns the value of name, "" when absent.
func (f Form) Get(name string) string { return f[name] }

// Has reports whether name was sent with a value.
func (f Form) Has(name string) bool {
	_, ok := f[name]
	return ok
}

// ReadForm reads the body of a POST request as a form, once. It refuses (with a *FormError):
// another method, another content type, any parameter in the URL query (OAuth 2.1 §3.2: token
// requests are form-encoded bodies; a query can end up in logs and Referer headers), a body
// over MaxFormBytes (read no further than the limit), more than MaxFormParams parameters, a
// repeated parameter, and malformed encoding (bad escapes, invalid UTF-8, a ';' separator).
func ReadForm(w http.ResponseWriter, r *http.Request) (Form, error) {
	if r.Method != http.MethodPost {
		return nil, &FormError{Err: ErrMethod}
	}
	if r.URL.RawQuery != "" {
		return nil, &FormError{Err: ErrQueryParameters}
	}
	// The exact value every client sends needs no parsing; anything else is parsed.
	if ct := r.Header.Get("Content-Type"); ct != formContentType {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != formContentType {
			return nil, &FormError{Err: ErrContentType}
		}
		for k, v := range params {
			if k != "charset" || !strings.EqualFold(v, "utf-8") {
				return nil, &FormError{Err: ErrContentType}
			}
		}
	}
	if r.ContentLength > MaxFormBytes {
		return nil, &FormError{Err: ErrBodyTooLarge}
	}
	body, err := readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &FormError{Err: ErrBodyTooLarge}
		}
		return nil, &FormError{Err: fmt.Errorf("%w: read body: %v", ErrMalformed, err)}
	}
	return ParseForm(string(body), MaxFormParams)
}

const formContentType = "application/x-www-form-urlencoded"

// readBody reads the body, at most MaxFormBytes. A body of known length is read into one
// buffer of that size (net/http's body reader stops at Content-Length), rather than into the
// growing buffers of io.ReadAll.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if r.ContentLength <= 0 {
		return io.ReadAll(body)
	}
	b := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// ParseForm decodes an application/x-www-form-urlencoded string with at most maxParams
// parameters. It is ReadForm without the HTTP part; see there for what it refuses.
func ParseForm(body string, maxParams int) (Form, error) {
	// Count before decoding anything, so a body of many tiny parameters costs no allocation.
	n := 0
	for i := 0; i < len(body); {
		j := strings.IndexByte(body[i:], '&')
		if j < 0 {
			j = len(body) - i
		}
		if j > 0 {
			n++
		}
		i += j + 1
	}
	if n > maxParams {
		return nil, &FormError{Err: ErrTooManyParams}
	}
	form := make(Form, n)
	// Parameters sent without a value are not in form; empty remembers them, so a repeat is
	// still caught. Most requests have none, so it is made only when needed.
	var empty map[string]struct{}
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if pair == "" {
			continue
		}
		if strings.Contains(pair, ";") {
			// Go's url.ParseQuery refuses ';' too: proxies and frameworks that split on it
			// would see different parameters than we do.
			return nil, &FormError{Err: ErrMalformed}
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || key == "" || !utf8.ValidString(key) {
			return nil, &FormError{Err: ErrMalformed}
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil || !utf8.ValidString(value) {
			return nil, &FormError{Err: ErrMalformed, Param: printable(key)}
		}
		_, dup := form[key]
		if _, dupEmpty := empty[key]; dup || dupEmpty {
			return nil, &FormError{Err: ErrDuplicate, Param: printable(key)}
		}
		if value != "" {
			form[key] = value
			continue
		}
		if empty == nil {
			empty = map[string]struct{}{}
		}
		empty[key] = struct{}{}
	}
	return form, nil
}

// printable bounds a parameter name for use in an error description.
func printable(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}
