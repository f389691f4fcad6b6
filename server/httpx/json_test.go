package httpx_test

import (
	"encoding/json"
	"testing"

	"github.com/latchkey-dev/latchkey/server/httpx"
)

// jsonStrings are the strings the hand-written encoders must escape exactly as encoding/json
// does: plain ASCII, each character encoding/json escapes, control characters, invalid UTF-8
// and the line separators it escapes for JavaScript.
var jsonStrings = []string{
	"", "client:svc", "https://auth.example.test/realm", "notes.read notes.write",
	`a"b`, `back\slash`, "<script>", "a&b", "x>y", "tab\there", "nl\n", "\x00\x1f\x7f",
	"héllo", "\u2028\u2029", "\xff\xfe", "日本", "emoji 🙂",
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonStrings {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := httpx.AppendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want x%s", s, got, want)
		}
	}
}

func TestAppendJSONStringsMatchesEncodingJSON(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {"a"}, jsonStrings} {
		want, err := json.Marshal(ss)
		if err != nil {
			t.Fatal(err)
		}
		if got := httpx.AppendJSONStrings(nil, ss); string(got) != string(want) {
			t.Errorf("AppendJSONStrings(%q) = %s, want %s", ss, got, want)
		}
	}
}

// FuzzAppendJSONString: for any string, the fast encoder writes encoding/json's bytes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := httpx.AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// BenchmarkAppendJSONString is a token-response string, encoded by hand and by encoding/json.
func BenchmarkAppendJSONString(b *testing.B) {
	const s = "https://auth.example.test/realm"
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(s)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 64)
		for b.Loop() {
			buf = httpx.AppendJSONString(buf[:0], s)
		}
	})
}
