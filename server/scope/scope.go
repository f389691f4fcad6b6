// Package scope parses and narrows OAuth scope values (RFC 6749 §3.3).
//
// A scope is kept as a sorted, duplicate-free list of scope-tokens; its canonical string form
// (Join) is that list joined by single spaces. The store records granted scopes in this form
// (store.Grant.Scope), and access tokens carry it in their "scope" claim.
package scope

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits on a requested scope. A client registers at most 64 scopes of at most 128 characters
// (the OAuthClient CRD), so anything larger cannot be granted anyway.
const (
	MaxTokens = 64
	MaxLength = 64 * 130
)

// ErrSyntax marks a scope value outside the grammar of RFC 6749 §3.3.
var ErrSyntax = errors.New("scope outside the scope-token grammar")

// Parse reads a scope parameter. The grammar of RFC 6749 §3.3 is enforced exactly:
//
//	scope       = scope-token *( SP scope-token )
//	scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
//
// so control characters (an injected "\n"), '"', '\', non-ASCII characters, and leading,
// trailing or doubled spaces are all ErrSyntax. Duplicates are dropped. The result is sorted;
// "" gives nil.
func Parse(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxLength {
		return nil, fmt.Errorf("%w: too long", ErrSyntax)
	}
	tokens := strings.Split(s, " ")
	if len(tokens) > MaxTokens {
		return nil, fmt.Errorf("%w: too many scope values", ErrSyntax)
	}
	for _, t := range tokens {
		if !ValidToken(t) {
			return nil, ErrSyntax
		}
	}
	slices.Sort(tokens)
	return slices.Compact(tokens), nil
}

// ValidToken reports whether t is one scope-token of RFC 6749 §3.3.
func ValidToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !isScopeTokenChar(t[i]) {
			return false
		}
	}
	return true
}

// isScopeTokenChar reports whether c may appear in a scope-token: %x21 / %x23-5B / %x5D-7E,
// printable ASCII without space, '"' and '\' (RFC 6749 §3.3).
func isScopeTokenChar(c byte) bool {
	return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
}

// Subset reports whether every scope in requested is in allowed, and if not, the first one
// that is not. Comparison is exact and case-sensitive (RFC 6749 §3.3).
func Subset(requested, allowed []string) (missing string, ok bool) {
	for _, r := range requested {
		if !slices.Contains(allowed, r) {
			return r, false
		}
	}
	return "", true
}

// Normalize returns scopes sorted and without duplicates, in a new slice.
func Normalize(scopes []string) []string {
	out := slices.Clone(scopes)
	slices.Sort(out)
	return slices.Compact(out)
}

// Join is the canonical string form: sorted, duplicate-free, single spaces.
func Join(scopes []string) string {
	return strings.Join(Normalize(scopes), " ")
}
