package accesstoken

import (
	"encoding/json"
	"testing"
)

// claimsCases cover every member, the omitempty ones present and absent, one audience (a
// string) and several (an array), and strings that need escaping.
var claimsCases = []Claims{
	{Issuer: "https://auth.example.test", Subject: "client:svc", Audience: Audience{"notes-api"}, Expiry: 1900,
		IssuedAt: 1000, ID: "j1", ClientID: "svc", Scope: "notes.read notes.write"},
	{Issuer: "https://auth.example.test", Subject: "alice", Audience: Audience{"a", "b"}, Expiry: 2, IssuedAt: 1,
		ID: "j2", ClientID: "web", Scope: "openid", Roles: []string{"admin", "ops"}, AuthTime: 1},
	{Issuer: "https://auth.example.test/<x>", Subject: "bob \"the\" builder", Audience: Audience{"ü&"}, Expiry: -1,
		ID: "\u2028", ClientID: "c\\d", Scope: "", Roles: []string{}},
	{},
}

// The hand-written encoder writes exactly encoding/json's bytes, so a token's payload does not
// depend on which one signed it.
func TestClaimsAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range claimsCases {
		want, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON\n got %s\nwant %s", got, want)
		}
	}
}

// BenchmarkClaimsJSON is the payload of a client_credentials token, through encoding/json (as
// before) and through appendJSON into a reused buffer (as Mint does).
func BenchmarkClaimsJSON(b *testing.B) {
	c := claimsCases[0]
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = c.appendJSON(buf[:0])
		}
	})
}
