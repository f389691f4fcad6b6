package tokenid

import (
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/server/store"
)

func TestFormats(t *testing.T) {
	fam := NewFamilyID()
	if len(fam) != 22 || strings.Contains(fam, ".") {
		t.Fatalf("family %q", fam)
	}
	if f, ok := FamilyOfJTI(NewJTI("")); !ok || f != "" {
		t.Fatal("client jti")
	}
	if f, ok := FamilyOfJTI(NewJTI(fam)); !ok || f != fam {
		t.Fatal("family jti")
	}
	for _, bad := range []string{"", "a.b.c", ".x", "x.", "a b", strings.Repeat("a", 200), "fam.../x"} {
		if _, ok := FamilyOfJTI(bad); ok {
			t.Errorf("FamilyOfJTI(%q) accepted", bad)
		}
	}
	rt, hash := NewRefreshToken(fam)
	if hash != store.Hash(rt) || len(rt) != 22+1+43 {
		t.Fatalf("refresh token %q", rt)
	}
	if f, h, ok := ParseRefreshToken(rt); !ok || f != fam || h != hash {
		t.Fatal("round trip")
	}
	for _, bad := range []string{"", fam, fam + ".", fam + "." + strings.Repeat("A", 42), "." + strings.Repeat("A", 43),
		fam + "." + strings.Repeat("A", 42) + "=", "a.b.c"} {
		if _, _, ok := ParseRefreshToken(bad); ok {
			t.Errorf("ParseRefreshToken(%q) accepted", bad)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		j := NewJTI("")
		if seen[j] {
			t.Fatal("jti collision")
		}
		seen[j] = true
	}
}

// SECURITY-CASES 11: a code carries 256 bits from crypto/rand, at least 43 base64url characters
// after the family, and 100 000 issuances do not collide.
func TestCodeFormatAndEntropy(t *testing.T) {
	fam := NewFamilyID()
	code, hash := NewCode(fam)
	if hash != store.Hash(code) || len(code) != 22+1+43 {
		t.Fatalf("code %q", code)
	}
	if f, h, ok := ParseCode(code); !ok || f != fam || h != hash {
		t.Fatal("round trip")
	}
	for _, bad := range []string{"", fam, fam + ".", fam + "." + strings.Repeat("A", 42), fam + ".%41" + strings.Repeat("A", 40), "a.b.c"} {
		if _, _, ok := ParseCode(bad); ok {
			t.Errorf("ParseCode(%q) accepted", bad)
		}
	}
	seen := make(map[string]struct{}, 100000)
	for range 100000 {
		c, _ := NewCode(fam)
		if _, dup := seen[c]; dup {
			t.Fatalf("collision after %d codes", len(seen))
		}
		seen[c] = struct{}{}
	}
}

func TestNewSecretIsValidSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret()
		if !ValidSecret(s) || seen[s] {
			t.Fatalf("NewSecret() = %q: valid %v, seen %v", s, ValidSecret(s), seen[s])
		}
		seen[s] = true
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 42), strings.Repeat("a", 44),
		strings.Repeat("a", 42) + "=", strings.Repeat("a", 42) + "+", strings.Repeat("a", 42) + "/"} {
		if ValidSecret(bad) {
			t.Errorf("ValidSecret(%q) = true", bad)
		}
	}
}
