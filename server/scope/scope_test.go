package scope

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"read", []string{"read"}, true},
		{"write read read", []string{"read", "write"}, true},
		{"orders:read https://api.example/x !#$%&'()*+,-./:;<=>?@[]^_`{|}~", []string{"!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "https://api.example/x", "orders:read"}, true},
		{"read  write", nil, false},
		{" read", nil, false},
		{"read ", nil, false},
		{"read\nwrite", nil, false},
		{"read\twrite", nil, false},
		{"openid profile\ninjected", nil, false},
		{`say"hi"`, nil, false},
		{`back\slash`, nil, false},
		{"caf\u00e9", nil, false},
		{"\x00", nil, false},
		{"del\x7f", nil, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): %v is not ErrSyntax", tc.in, err)
		}
	}
}

func TestSubsetAndJoin(t *testing.T) {
	if m, ok := Subset([]string{"a", "b"}, []string{"b", "a", "c"}); !ok || m != "" {
		t.Fatal("subset refused")
	}
	if m, ok := Subset([]string{"a", "B"}, []string{"a", "b"}); ok || m != "B" {
		t.Fatal("case-insensitive subset")
	}
	if got := Join([]string{"b", "a", "b"}); got != "a b" {
		t.Fatalf("Join = %q", got)
	}
}
