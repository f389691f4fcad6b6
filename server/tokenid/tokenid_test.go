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
