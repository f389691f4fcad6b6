package verifier_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchkey-dev/latchkey/verifier"
)

// FuzzParse feeds arbitrary strings to Verify. None is validly signed by a key in the JWKS (the
// keys are generated afresh in every run), so Verify must reject every input, with one of the
// package's errors, and never panic. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	es := testKey(f, "ES256")
	iss := newTestIssuer(f, es)
	v := newVerifier(f, iss, newClock())
	valid := mint(f, es, iss.claims(), nil)
	f.Add(valid)
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add(`{"payload":"e30","protected":"e30","signature":""}`)
	f.Fuzz(func(t *testing.T, token string) {
		if token == valid {
			return
		}
		c, err := v.Verify(t.Context(), token)
		if err == nil || c != nil {
			t.Fatalf("Verify accepted %q", token)
		}
		if !isPackageError(err) {
			t.Fatalf("Verify error %v wraps none of the package's errors", err)
		}
	})
}

// FuzzSignedClaims signs an arbitrary header and payload with a trusted key (so the signature
// always verifies) and checks that Verify accepts only what RFC 9068 §4 allows, judged by an
// independent decoding of the same bytes. In seeds, $KID, $ISS and $AUD stand for the trusted
// kid, the issuer and the audience. The seed corpus is in testdata/fuzz/FuzzSignedClaims.
func FuzzSignedClaims(f *testing.F) {
	es := testKey(f, "ES256")
	iss := newTestIssuer(f, es)
	clk := newClock()
	v := newVerifier(f, iss, clk)
	f.Add(`{"alg":"ES256","kid":"$KID","typ":"at+jwt"}`,
		`{"iss":"$ISS","sub":"alice","aud":"$AUD","exp":1772367300,"iat":1772366400,"jti":"j","client_id":"c","scope":"notes.read"}`)
	f.Add(`{"alg":"ES256","kid":"$KID","typ":"JWT"}`,
		`{"iss":"$ISS","sub":"alice","aud":["x","$AUD"],"exp":"1772367300","iat":1772366400,"jti":"j","client_id":"c"}`)
	replacer := strings.NewReplacer("$KID", es.KeyID, "$ISS", iss.URL, "$AUD", testAudience)
	f.Fuzz(func(t *testing.T, header, payload string) {
		header, payload = replacer.Replace(header), replacer.Replace(payload)
		tok := forge(t, header, payload, "ES256", es.Signer)
		c, err := v.Verify(t.Context(), tok)
		if err != nil {
			if c != nil || !isPackageError(err) {
				t.Fatalf("Verify returned claims %v or a foreign error %v", c, err)
			}
			return
		}
		if why := violation(header, payload, iss.URL, clk.Now()); why != "" {
			t.Fatalf("Verify accepted a token that %s:\nheader  %s\npayload %s", why, header, payload)
		}
	})
}

// violation says why RFC 9068 §4 forbids accepting header and payload, or "" if nothing does.
func violation(header, payload, issuer string, now time.Time) string {
	var h, p map[string]any
	if json.Unmarshal([]byte(header), &h) != nil || json.Unmarshal([]byte(payload), &p) != nil {
		return "is not JSON"
	}
	typ, _ := h["typ"].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return "has typ " + typ
	}
	if h["alg"] != "ES256" {
		return "has another alg"
	}
	for _, k := range []string{"jku", "x5u", "jwk", "x5c", "crit", "b64"} {
		if _, ok := h[k]; ok {
			return "has a " + k + " header"
		}
	}
	if p["iss"] != issuer {
		return "has another issuer"
	}
	switch aud := p["aud"].(type) {
	case string:
		if aud != testAudience {
			return "has another audience"
		}
	case []any:
		found := false
		for _, a := range aud {
			found = found || a == testAudience
		}
		if !found {
			return "lacks the audience"
		}
	default:
		return "has no audience"
	}
	leeway := float64(verifier.DefaultLeeway / time.Second)
	t := float64(now.Unix())
	exp, ok := p["exp"].(float64)
	if !ok || t >= exp+leeway {
		return "is expired or has no numeric exp"
	}
	if iat, ok := p["iat"].(float64); !ok || iat > t+leeway {
		return "has no numeric iat, or one in the future"
	}
	if nbf, ok := p["nbf"]; ok {
		if n, isNum := nbf.(float64); !isNum || n > t+leeway {
			return "has a bad nbf"
		}
	}
	for _, k := range []string{"sub", "jti", "client_id"} {
		if s, _ := p[k].(string); s == "" {
			return "has no " + k
		}
	}
	return ""
}

func isPackageError(err error) bool {
	for _, e := range []error{verifier.ErrMalformed, verifier.ErrType, verifier.ErrHeader, verifier.ErrAlgorithm,
		verifier.ErrKeyNotFound, verifier.ErrSignature, verifier.ErrIssuer, verifier.ErrAudience, verifier.ErrExpired,
		verifier.ErrNotYetValid, verifier.ErrMissingClaim, verifier.ErrInactive, verifier.ErrUnavailable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
