package clients

import (
	"encoding/base64"
	"testing"
	"unicode/utf8"
)

func TestParseBasic(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, header, id, secret string
		ok                       bool
	}{
		{"plain", "Basic " + b64("svc:s3cret"), "svc", "s3cret", true},
		{"scheme is case-insensitive", "bAsIc " + b64("svc:s3cret"), "svc", "s3cret", true},
		{"form-encoded (RFC 6749 Appendix B)", "Basic " + b64("a%3Ab:p%40ss+w%2Brd%25"), "a:b", "p@ss w+rd%", true},
		{"colon in the secret", "Basic " + b64("svc:a:b"), "svc", "a:b", true},
		{"unpadded base64", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("svc:x")), "svc", "x", true},
		{"non-ASCII, encoded", "Basic " + b64("%C3%A9:%E2%9C%93"), "é", "✓", true},
		{"no colon", "Basic " + b64("svc"), "", "", false},
		{"empty id", "Basic " + b64(":x"), "", "", false},
		{"empty secret", "Basic " + b64("svc:"), "", "", false},
		{"bad base64", "Basic !!!", "", "", false},
		{"bad escape", "Basic " + b64("svc:%zz"), "", "", false},
		{"invalid UTF-8", "Basic " + b64("svc:%ff"), "", "", false},
		{"Bearer", "Bearer abc", "", "", false},
		{"scheme only", "Basic", "", "", false},
		{"huge", "Basic " + string(make([]byte, 5000)), "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, secret, err := ParseBasic(tc.header)
			if (err == nil) != tc.ok || id != tc.id || secret != tc.secret {
				t.Fatalf("got %q %q %v", id, secret, err)
			}
		})
	}
}

// FuzzParseBasic: decoding never panics, accepted credentials are non-empty valid UTF-8, and
// EncodeBasic of them decodes to the same values.
func FuzzParseBasic(f *testing.F) {
	f.Add("Basic c3ZjOnNlY3JldA==")
	f.Add("basic YSUzQWI6cCU0MHNzK3clMkJyZCUyNQ")
	f.Add("Basic !!")
	f.Fuzz(func(t *testing.T, header string) {
		id, secret, err := ParseBasic(header)
		if err != nil {
			if id != "" || secret != "" {
				t.Fatal("values returned with an error")
			}
			return
		}
		if id == "" || secret == "" || !utf8.ValidString(id) || !utf8.ValidString(secret) {
			t.Fatalf("accepted %q %q", id, secret)
		}
		id2, secret2, err := ParseBasic(EncodeBasic(id, secret))
		if err != nil || id2 != id || secret2 != secret {
			t.Fatalf("round trip: %q %q %v", id2, secret2, err)
		}
	})
}
