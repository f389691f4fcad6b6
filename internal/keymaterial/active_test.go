package keymaterial

import (
	"testing"
	"time"
)

func TestActiveAt(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	key := func(kid string, act, ret time.Duration) Candidate {
		return Candidate{KeyID: kid, Timeline: Timeline{CreatedAt: t0, ActivatesAt: t0.Add(act), RetiresAt: t0.Add(ret)}}
	}
	cases := []struct {
		name    string
		cands   []Candidate
		revoked []string
		now     time.Duration
		want    string
	}{
		{"no keys means no signer", nil, nil, 0, ""},
		{"a key before its activation does not sign", []Candidate{key("a", h, 10*h)}, nil, 0, ""},
		{"a key signs from its activation", []Candidate{key("a", h, 10*h)}, nil, h, "a"},
		{"a key stops signing at its retirement", []Candidate{key("a", h, 10*h)}, nil, 10 * h, ""},
		{"the successor takes over at the handover instant", []Candidate{key("a", 0, 10*h), key("b", 10*h, 20*h)}, nil, 10 * h, "b"},
		{"the newest activation wins an overlap", []Candidate{key("a", 0, 10*h), key("b", 2*h, 20*h)}, nil, 3 * h, "b"},
		{"a revoked key never signs", []Candidate{key("a", 0, 10*h), key("b", 2*h, 20*h)}, []string{"b"}, 3 * h, "a"},
		{"equal activations go to the larger kid", []Candidate{key("a", 0, 10*h), key("b", 0, 10*h)}, nil, h, "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ActiveAt(tc.cands, tc.revoked, t0.Add(tc.now))
			if ok != (tc.want != "") || got.KeyID != tc.want {
				t.Fatalf("ActiveAt() = %q, %v; want %q", got.KeyID, ok, tc.want)
			}
		})
	}
}
