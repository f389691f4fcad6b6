package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Form
		err  error
	}{
		{"simple", "grant_type=client_credentials&scope=a+b", Form{"grant_type": "client_credentials", "scope": "a b"}, nil},
		{"percent-encoding", "client_id=a%2Bb%3A%20c", Form{"client_id": "a+b: c"}, nil},
		{"empty value is absent", "scope=&grant_type=x", Form{"grant_type": "x"}, nil},
		{"no value at all is absent", "scope&grant_type=x", Form{"grant_type": "x"}, nil},
		{"empty segments are skipped", "&&grant_type=x&", Form{"grant_type": "x"}, nil},
		{"empty body", "", Form{}, nil},
		{"duplicate", "a=1&a=2", nil, ErrDuplicate},
		{"duplicate with an empty value", "a=&a=2", nil, ErrDuplicate},
		{"duplicate after decoding", "a=1&%61=2", nil, ErrDuplicate},
		{"bad escape", "a=%zz", nil, ErrMalformed},
		{"bad escape in key", "%zz=1", nil, ErrMalformed},
		{"semicolon", "a=1;b=2", nil, ErrMalformed},
		{"empty key", "=1", nil, ErrMalformed},
		{"invalid UTF-8", "a=%ff", nil, ErrMalformed},
		{"too many", strings.Repeat("a&", MaxFormParams+1), nil, ErrTooManyParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseForm(tc.body, MaxFormParams)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadForm(t *testing.T) {
	req := func(method, target, ctype, body string) *http.Request {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		err  error
	}{
		{"ok", req("POST", "/token", "application/x-www-form-urlencoded", "a=1"), nil},
		{"ok with charset", req("POST", "/token", "application/x-www-form-urlencoded; charset=UTF-8", "a=1"), nil},
		{"other charset", req("POST", "/token", "application/x-www-form-urlencoded; charset=latin1", "a=1"), ErrContentType},
		{"json", req("POST", "/token", "application/json", "{}"), ErrContentType},
		{"multipart", req("POST", "/token", "multipart/form-data; boundary=x", "a=1"), ErrContentType},
		{"no content type", req("POST", "/token", "", "a=1"), ErrContentType},
		{"GET", req("GET", "/token", "application/x-www-form-urlencoded", ""), ErrMethod},
		{"query", req("POST", "/token?a=1", "application/x-www-form-urlencoded", "b=1"), ErrQueryParameters},
		{"empty query marker is fine", req("POST", "/token?", "application/x-www-form-urlencoded", "b=1"), nil},
		{"too large", req("POST", "/token", "application/x-www-form-urlencoded", strings.Repeat("a", MaxFormBytes+1)), ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadForm(httptest.NewRecorder(), tc.r)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// FuzzParseForm: parsing never panics, never returns a repeated or empty-valued parameter,
// never more than the limit, and only valid UTF-8; and whatever it accepts round-trips.
func FuzzParseForm(f *testing.F) {
	f.Add("grant_type=client_credentials&scope=read+write")
	f.Add("a=1&a=2")
	f.Add("a=%zz&b")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := ParseForm(body, MaxFormParams)
		if err != nil {
			var fe *FormError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormError", err)
			}
			return
		}
		if len(form) > MaxFormParams {
			t.Fatalf("%d parameters", len(form))
		}
		values := url.Values{}
		for k, v := range form {
			if k == "" || v == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("bad parameter %q=%q", k, v)
			}
			values.Set(k, v)
		}
		again, err := ParseForm(values.Encode(), MaxFormParams)
		if err != nil || !reflect.DeepEqual(again, form) {
			t.Fatalf("round trip: %v %v != %v", err, again, form)
		}
	})
}

// Case 100: X-Forwarded-For is believed only from trusted proxies.
func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy", "203.0.113.9:1234", nil, "203.0.113.9"},
		{"spoofed from outside", "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9"},
		{"through a trusted proxy", "10.0.0.1:1234", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client prepends a fake hop", "10.0.0.1:1234", []string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{"two trusted proxies", "10.0.0.1:1234", []string{"198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
		{"several headers", "10.0.0.1:1234", []string{"1.2.3.4", "198.51.100.7"}, "198.51.100.7"},
		{"garbage hop stops the chain", "10.0.0.1:1234", []string{"198.51.100.7, garbage"}, "10.0.0.1"},
		{"only trusted hops", "10.0.0.1:1234", []string{"10.0.0.3"}, "10.0.0.3"},
		{"ipv4-mapped peer", "[::ffff:10.0.0.1]:1", []string{"198.51.100.7"}, "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, trusted).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
