package redirect

import (
	"errors"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	const (
		web      = "https://good.example.com/callback"
		loop4    = "http://127.0.0.1/callback"
		loop6    = "http://[::1]/cb"
		loopQ    = "http://127.0.0.1:3000/cb?app=1"
		native   = "com.example.app:/oauth2redirect"
		loopRoot = "http://127.0.0.1"
	)
	tests := []struct {
		name       string
		registered []string
		requested  string
		want       bool
	}{
		{"an exactly registered https URI matches", []string{web}, web, true},
		{"the second of two registered URIs matches", []string{"https://a.example.com/cb", web}, web, true},
		{"an exactly registered private-use URI matches", []string{native}, native, true},

		// Exact means exact: no normalisation of any kind.
		{"an upper-case host does not match", []string{web}, "https://GOOD.example.com/callback", false},
		{"an upper-case scheme does not match", []string{web}, "HTTPS://good.example.com/callback", false},
		{"an upper-case path does not match", []string{web}, "https://good.example.com/Callback", false},
		{"a trailing slash does not match", []string{web}, web + "/", false},
		{"a missing trailing slash does not match", []string{web + "/"}, web, false},
		{"an extra query does not match", []string{web}, web + "?next=https://evil.com", false},
		{"an empty query does not match", []string{web}, web + "?", false},
		{"a fragment does not match", []string{web}, web + "#x", false},
		{"a prefix of the registered URI does not match", []string{web}, "https://good.example.com/", false},
		{"an extension of the registered path does not match", []string{web}, web + "/evil", false},
		{"a path traversal does not match", []string{web}, "https://good.example.com/callback/../evil", false},
		{"a dot segment does not match", []string{web}, "https://good.example.com/./callback", false},
		{"userinfo that puts the real host after @ does not match", []string{web}, "https://good.example.com@evil.com/callback", false},
		{"userinfo with the registered host does not match", []string{web}, "https://user@good.example.com/callback", false},
		{"an encoded slash does not match", []string{web}, "https://good.example.com%2Fcallback", false},
		{"an encoded path character does not match", []string{web}, "https://good.example.com/c%61llback", false},
		{"an encoded @ does not match", []string{web}, "https://good.example.com%40evil.com/callback", false},
		{"a Cyrillic lookalike host does not match", []string{web}, "https://g\u043e\u043ed.example.com/callback", false},
		{"a fullwidth lookalike host does not match", []string{web}, "https://\uff47ood.example.com/callback", false},
		{"an explicit default port does not match", []string{web}, "https://good.example.com:443/callback", false},
		{"another port on a non-loopback host does not match", []string{web}, "https://good.example.com:8443/callback", false},
		{"a trailing dot on the host does not match", []string{web}, "https://good.example.com./callback", false},
		{"a backslash before @ does not match", []string{web}, "https://good.example.com\\@evil.com/callback", false},
		{"a backslash path does not match", []string{web}, "https://good.example.com\\callback", false},
		{"leading whitespace does not match", []string{web}, " " + web, false},
		{"a trailing newline does not match", []string{web}, web + "\n", false},
		{"a NUL byte does not match", []string{web}, web + "\x00", false},
		{"a scheme-relative URI does not match", []string{web}, "//good.example.com/callback", false},
		{"http instead of https does not match", []string{web}, "http://good.example.com/callback", false},
		{"a private-use scheme in upper case does not match", []string{native}, "COM.EXAMPLE.APP:/oauth2redirect", false},
		{"a private-use URI with a trailing slash does not match", []string{native}, native + "/", false},
		{"an empty redirect_uri matches nothing", []string{web}, "", false},
		{"no registered URIs match nothing", nil, web, false},
		{"a URI longer than the limit never matches", []string{web + strings.Repeat("a", MaxLength)}, web + strings.Repeat("a", MaxLength), false},

		// Loopback: any port, everything else exact (RFC 8252 §7.3).
		{"a loopback URI matches on an ephemeral port", []string{loop4}, "http://127.0.0.1:51004/callback", true},
		{"a loopback URI matches on port 1", []string{loop4}, "http://127.0.0.1:1/callback", true},
		{"a loopback URI matches on port 65535", []string{loop4}, "http://127.0.0.1:65535/callback", true},
		{"a loopback URI matches without a port", []string{loop4}, loop4, true},
		{"a loopback URI registered with a port matches another port", []string{"http://127.0.0.1:8080/callback"}, "http://127.0.0.1:9090/callback", true},
		{"a loopback URI registered with a port matches no port", []string{"http://127.0.0.1:8080/callback"}, loop4, true},
		{"an IPv6 loopback URI matches on any port", []string{loop6}, "http://[::1]:8080/cb", true},
		{"a loopback URI with a query matches with the same query", []string{loopQ}, "http://127.0.0.1:4000/cb?app=1", true},
		{"a loopback root URI matches on any port", []string{loopRoot}, "http://127.0.0.1:5000", true},
		{"a loopback root URI with a path does not match", []string{loopRoot}, "http://127.0.0.1:5000/", false},
		{"a loopback URI with another query does not match", []string{loopQ}, "http://127.0.0.1:4000/cb?app=2", false},
		{"a loopback URI with an extra query parameter does not match", []string{loopQ}, "http://127.0.0.1:4000/cb?app=1&x=2", false},
		{"a loopback URI with another path does not match", []string{loop4}, "http://127.0.0.1:5000/callback/", false},
		{"a loopback URI with a path traversal does not match", []string{loop4}, "http://127.0.0.1:5000/callback/../evil", false},
		{"a loopback URI with a fragment does not match", []string{loop4}, "http://127.0.0.1:5000/callback#x", false},
		{"a loopback URI with a backslash does not match", []string{loop4}, "http://127.0.0.1:5000\\@evil.com/callback", false},
		{"localhost gets no port exception", []string{"http://127.0.0.1/callback"}, "http://localhost:5000/callback", false},
		{"127.0.0.2 is not the registered loopback host", []string{loop4}, "http://127.0.0.2:5000/callback", false},
		{"an IPv4-mapped IPv6 loopback does not match", []string{loop4}, "http://[::ffff:127.0.0.1]:5000/callback", false},
		{"the IPv6 loopback does not match an IPv4 registration", []string{loop4}, "http://[::1]:5000/callback", false},
		{"the long form of ::1 does not match", []string{loop6}, "http://[0:0:0:0:0:0:0:1]:5000/cb", false},
		{"an IPv6 zone does not match", []string{loop6}, "http://[::1%25lo]:5000/cb", false},
		{"a decimal IPv4 address does not match", []string{loop4}, "http://2130706433:5000/callback", false},
		{"a short IPv4 address does not match", []string{loop4}, "http://127.1:5000/callback", false},
		{"a hex IPv4 address does not match", []string{loop4}, "http://0x7f.0.0.1:5000/callback", false},
		{"https on a loopback host does not match an http registration", []string{loop4}, "https://127.0.0.1:5000/callback", false},
		{"an upper-case scheme on a loopback URI does not match", []string{loop4}, "HTTP://127.0.0.1:5000/callback", false},
		{"a loopback host followed by a domain does not match", []string{loop4}, "http://127.0.0.1.evil.com/callback", false},
		{"a loopback host as userinfo does not match", []string{loop4}, "http://127.0.0.1@evil.com/callback", false},
		{"a loopback host and port as userinfo does not match", []string{loop4}, "http://127.0.0.1:5000@evil.com/callback", false},
		{"port 0 does not match", []string{loop4}, "http://127.0.0.1:0/callback", false},
		{"port 65536 does not match", []string{loop4}, "http://127.0.0.1:65536/callback", false},
		{"a port with a leading zero does not match", []string{loop4}, "http://127.0.0.1:080/callback", false},
		{"an empty port does not match", []string{loop4}, "http://127.0.0.1:/callback", false},
		{"two ports do not match", []string{loop4}, "http://127.0.0.1:5000:6000/callback", false},
		{"a signed port does not match", []string{loop4}, "http://127.0.0.1:+5000/callback", false},
		{"a loopback registration does not open a non-loopback host", []string{loop4}, "http://evil.com:5000/callback", false},

		// A registered URI that breaks the CRD rules never matches, even exactly (--dev objects skip
		// the API server's validation).
		{"a registered http URI on a public host never matches", []string{"http://good.example.com/cb"}, "http://good.example.com/cb", false},
		{"a registered localhost URI never matches", []string{"http://localhost:8080/cb"}, "http://localhost:8080/cb", false},
		{"a registered URI with a fragment never matches", []string{web + "#f"}, web + "#f", false},
		{"a registered wildcard never matches", []string{"https://*.example.com/cb"}, "https://*.example.com/cb", false},
		{"an invalid registration does not hide a valid one", []string{"http://localhost/cb", web}, web, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Match(tt.registered, tt.requested)
			if ok != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tt.registered, tt.requested, ok, tt.want)
			}
			if ok && got != tt.requested {
				t.Fatalf("Match returned %q, want the requested URI %q", got, tt.requested)
			}
			if !ok && got != "" {
				t.Fatalf("Match returned %q with no match", got)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	const a, b = "https://a.example.com/cb", "http://127.0.0.1/cb"
	tests := []struct {
		name       string
		registered []string
		requested  string
		want       string
		wantErr    error
	}{
		{"a registered redirect_uri is used", []string{a, b}, a, a, nil},
		{"a loopback redirect_uri is used with its port", []string{a, b}, "http://127.0.0.1:5555/cb", "http://127.0.0.1:5555/cb", nil},
		{"an absent redirect_uri with one registered URI uses it", []string{a}, "", a, nil},
		{"an absent redirect_uri with one registered loopback URI uses it as registered", []string{b}, "", b, nil},
		{"an absent redirect_uri with two registered URIs is an error", []string{a, b}, "", "", ErrAmbiguous},
		{"an absent redirect_uri with no registered URI is an error", nil, "", "", ErrNoneRegistered},
		{"an unregistered redirect_uri is an error", []string{a}, "https://evil.example.com/cb", "", ErrNotRegistered},
		{"a redirect_uri registered to nobody is an error even with one registered URI", []string{a}, a + "/", "", ErrNotRegistered},
		{"an absent redirect_uri with one invalid registered URI is an error", []string{"http://evil.example.com/cb"}, "", "", ErrNotRegistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.registered, tt.requested)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Resolve error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Resolve = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want string // "" = valid, else a substring of the message
	}{
		{"an https URI is valid", "https://app.example.com/callback", ""},
		{"an https URI with a port and query is valid", "https://app.example.com:8443/cb?x=1", ""},
		{"an IPv4 loopback URI is valid", "http://127.0.0.1/callback", ""},
		{"an IPv4 loopback URI with a port is valid", "http://127.0.0.1:8080/callback", ""},
		{"an IPv6 loopback URI is valid", "http://[::1]/callback", ""},
		{"a reverse-domain private-use URI is valid", "com.example.app:/oauth2redirect", ""},
		{"a reverse-domain private-use URI with two slashes is valid", "com.example.app://callback", ""},
		{"a fragment is invalid", "https://app.example.com/cb#x", "fragment"},
		{"an empty fragment is invalid", "https://app.example.com/cb#", "fragment"},
		{"a wildcard host is invalid", "https://*.example.com/cb", "wildcard"},
		{"a relative URI is invalid", "/callback", "absolute"},
		{"a URI with a space is invalid", "https://app.example.com/a b", "absolute"},
		{"an empty URI is invalid", "", "absolute"},
		{"a scheme without anything after it is invalid", "https:", "absolute"},
		{"http on a public host is invalid", "http://app.example.com/cb", "http is only allowed"},
		{"http on localhost is invalid", "http://localhost:8080/cb", "http is only allowed"},
		{"http on 127.0.0.2 is invalid", "http://127.0.0.2/cb", "http is only allowed"},
		{"HTTP in upper case on a public host is invalid", "HTTP://app.example.com/cb", "http is only allowed"},
		{"http without a host is invalid", "http:/cb", "http is only allowed"},
		{"https without a host is invalid", "https:///cb", "https redirect URI needs a host"},
		{"https with only a path is invalid", "https:cb", "https redirect URI needs a host"},
		{"a single-word private-use scheme is invalid", "myapp:/callback", "reverse domain"},
		{"javascript: is invalid", "javascript:alert(1)", "reverse domain"},
		{"data: is invalid", "data:text/html,hi", "reverse domain"},
		{"a URI over 2048 bytes is invalid", "https://app.example.com/" + strings.Repeat("a", MaxLength), "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.uri)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%q): %v", tt.uri, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalid mentioning %q", tt.uri, err, tt.want)
			}
		})
	}
}

// TestValidateMirrorsTheCRD fails when the CEL rules on spec.redirectURIs change and Validate does
// not: each Go rule carries the exact CEL text and message it mirrors.
func TestValidateMirrorsTheCRD(t *testing.T) {
	src, err := os.ReadFile("../../api/v1alpha1/oauthclient_types.go")
	if err != nil {
		t.Fatal(err)
	}
	marker := regexp.MustCompile(`(?m)^\s*// \+kubebuilder:validation:items:XValidation:rule="(.*)",message="(.*)"\s*$`)
	var inCRD [][2]string
	lines := strings.Split(string(src), "\n")
	for i, line := range lines {
		m := marker.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		// Only the markers of RedirectURIs: the field follows its marker block.
		for _, next := range lines[i+1:] {
			if strings.HasPrefix(strings.TrimSpace(next), "//") {
				continue
			}
			if strings.Contains(next, "RedirectURIs") {
				inCRD = append(inCRD, [2]string{m[1], m[2]})
			}
			break
		}
	}
	if len(inCRD) != len(rules) {
		t.Fatalf("the CRD has %d redirect URI rules, Validate has %d", len(inCRD), len(rules))
	}
	for i, r := range rules {
		if inCRD[i][0] != r.cel || inCRD[i][1] != r.message {
			t.Errorf("rule %d:\n  CRD:      %s | %s\n  Validate: %s | %s", i, inCRD[i][0], inCRD[i][1], r.cel, r.message)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for uri, want := range map[string]bool{
		"http://127.0.0.1":           true,
		"http://127.0.0.1:80/cb":     true,
		"http://[::1]/cb":            true,
		"http://localhost/cb":        false,
		"https://127.0.0.1/cb":       false,
		"http://127.0.0.1@evil.com/": false,
	} {
		if got := IsLoopback(uri); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", uri, got, want)
		}
	}
}

// loopbackShape is an independent statement of RFC 8252 §7.3 for the fuzz property: the loopback
// prefix, an optional port, and a rest that starts a path or query.
var loopbackShape = regexp.MustCompile(`^(http://(?:127\.0\.0\.1|\[::1\]))(?::([0-9]{1,5}))?([/?].*)?$`)

// FuzzMatch checks the one property that matters: a match means the two URIs are equal, or are
// the same loopback URI on another port, and the URI returned is the one requested.
func FuzzMatch(f *testing.F) {
	f.Add("https://good.example.com/cb", "https://good.example.com/cb")
	f.Add("http://127.0.0.1/cb", "http://127.0.0.1:51004/cb")
	f.Add("http://[::1]/cb", "http://[::1]:8080/cb")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		got, ok := Match([]string{registered}, requested)
		if !ok {
			if got != "" {
				t.Fatalf("no match but returned %q", got)
			}
			// Completeness: a valid registered URI always matches itself.
			if registered == requested && Validate(registered) == nil {
				t.Fatalf("valid %q does not match itself", registered)
			}
			return
		}
		if got != requested {
			t.Fatalf("returned %q, want the requested %q", got, requested)
		}
		if err := Validate(registered); err != nil {
			t.Fatalf("invalid registration %q matched: %v", registered, err)
		}
		if registered == requested {
			return
		}
		r := loopbackShape.FindStringSubmatch(registered)
		q := loopbackShape.FindStringSubmatch(requested)
		if r == nil || q == nil {
			t.Fatalf("%q matched %q but they differ and are not both loopback", requested, registered)
		}
		if r[1] != q[1] || r[3] != q[3] {
			t.Fatalf("%q matched %q but they differ in more than the port", requested, registered)
		}
		// And the standard library agrees that the browser will go to a loopback IP with no
		// userinfo and no fragment.
		u, err := url.Parse(requested)
		if err != nil || u.User != nil || u.Fragment != "" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") {
			t.Fatalf("matched loopback %q parses as %+v (%v)", requested, u, err)
		}
	})
}
