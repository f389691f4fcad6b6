package scope

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// grammar is RFC 6749 §3.3 written as a regular expression, independently of Parse:
// scope = scope-token *( SP scope-token ), scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
var grammar = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$`)

// FuzzParse: Parse never panics; it accepts exactly the strings of the grammar within the
// size bounds (so no control character, quote, backslash or non-ASCII byte ever passes, nor a
// leading, trailing or doubled space); what it returns is sorted, duplicate-free, made of the
// input's own tokens, and Join of it parses back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"openid profile email",
		"read write read",
		"openid profile\ninjected",
		"openid\u00a0profile",
		"openid\u200bprofile",
		"caf\u00e9",
		"read  write",
		`say"hi" back\slash`,
		"orders:read https://api.example/x",
		strings.Repeat("a ", MaxTokens) + "a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		inGrammar := s == "" || grammar.MatchString(s)
		withinBounds := len(s) <= MaxLength && strings.Count(s, " ") < MaxTokens
		if (err == nil) != (inGrammar && withinBounds) {
			t.Fatalf("Parse(%q) error %v; grammar %v, bounds %v", s, err, inGrammar, withinBounds)
		}
		if err != nil {
			if got != nil {
				t.Fatalf("Parse(%q) returned %q with an error", s, got)
			}
			return
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("Parse(%q) = %q: not sorted and unique", s, got)
		}
		input := strings.Split(s, " ")
		for _, tok := range got {
			if !ValidToken(tok) || !slices.Contains(input, tok) {
				t.Fatalf("Parse(%q) invented %q", s, tok)
			}
		}
		for _, tok := range input {
			if s != "" && !slices.Contains(got, tok) {
				t.Fatalf("Parse(%q) dropped %q", s, tok)
			}
		}
		again, err := Parse(Join(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("Parse(Join(%q)) = %q, %v", got, again, err)
		}
	})
}
