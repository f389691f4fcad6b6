package redisstore

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	type want struct {
		addrs      []string
		db         int
		user, pass string
		cluster    bool
		master     string
		sentPass   string
		tls        bool
		dial, read time.Duration
	}
	for _, tc := range []struct {
		url  string
		want want
	}{
		{"redis://localhost:6379/2", want{addrs: []string{"localhost:6379"}, db: 2}},
		{"redis://:s3cret@cache", want{addrs: []string{"cache:6379"}, pass: "s3cret"}},
		{"rediss://user:p%40ss@cache:6380/0?dial_timeout=2s&read_timeout=3", want{
			addrs: []string{"cache:6380"}, user: "user", pass: "p@ss", tls: true, dial: 2 * time.Second, read: 3 * time.Second}},
		{"redis://h1:7000,h2:7001", want{addrs: []string{"h1:7000", "h2:7001"}, cluster: true}},
		{"redis://h1:7000?cluster=true", want{addrs: []string{"h1:7000"}, cluster: true}},
		{"redis://h1:7000?cluster=true&addr=h2:7001&addr=h3:7002", want{addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, cluster: true}},
		{"rediss://[::1]:7000,[::2]", want{addrs: []string{"[::1]:7000", "[::2]:6379"}, cluster: true, tls: true}},
		{"redis-sentinel://:pw@s1:26380,s2/3?master=mymaster&sentinel_password=sp", want{
			addrs: []string{"s1:26380", "s2:26379"}, db: 3, pass: "pw", master: "mymaster", sentPass: "sp"}},
		{"rediss-sentinel://s1?master_name=m", want{addrs: []string{"s1:26379"}, master: "m", tls: true}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := ParseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if w.dial == 0 {
				w.dial = DefaultDialTimeout
			}
			if w.read == 0 {
				w.read = DefaultReadTimeout
			}
			if !slices.Equal(o.Addrs, w.addrs) || o.DB != w.db || o.Username != w.user || o.Password != w.pass ||
				o.IsClusterMode != w.cluster || o.MasterName != w.master || o.SentinelPassword != w.sentPass ||
				(o.TLSConfig != nil) != w.tls || o.DialTimeout != w.dial || o.ReadTimeout != w.read {
				t.Fatalf("got %+v, want %+v", o, w)
			}
			if o.WriteTimeout != DefaultWriteTimeout || o.PoolTimeout != DefaultPoolTimeout ||
				o.MaxRetries != DefaultMaxRetries || !o.ContextTimeoutEnabled || o.DialerRetries != 1 {
				t.Fatalf("defaults not set: %+v", o)
			}
			if o.TLSConfig != nil && (o.TLSConfig.InsecureSkipVerify || o.TLSConfig.ServerName != "") {
				t.Fatalf("TLS config %+v", o.TLSConfig)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, u := range []string{
		"",
		"localhost:6379",
		"http://h",
		"redis://",
		"redis://h?unknown=1",
		"redis://h?dial_timeout=0",
		"redis://h?read_timeout=-1s",
		"redis://h?dial_timeout=abc",
		"redis://h?protocol=4",
		"redis://h?cluster=maybe",
		"redis://h:99999",
		"redis://h:port",
		"redis://h1,,h2",
		"redis://h/1/2",
		"redis://h/x",
		"redis://h1,h2/1",
		"redis://h?master=m",
		"redis://h?sentinel_password=x",
		"redis-sentinel://s1",
		"redis-sentinel://s1?master=m&cluster=true",
		"redis://h#frag",
		"redis://:supersecret@h?bogus=1",
	} {
		t.Run(u, func(t *testing.T) {
			_, err := ParseURL(u)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "supersecret") {
				t.Fatalf("error echoes the password: %v", err)
			}
		})
	}
}

// Keys built from identifiers never carry a brace (which would move them to another slot) and
// never collide.
func TestEnc(t *testing.T) {
	seen := map[string]string{}
	for _, v := range []string{"", "=", "abc", "a-b_c.d", "a}b", "{x}", "a:b", "YWJj", "=YWJj", "ü", " "} {
		e := enc(v)
		if strings.ContainsAny(e, "{}:") {
			t.Errorf("enc(%q) = %q", v, e)
		}
		if prev, ok := seen[e]; ok {
			t.Errorf("enc(%q) = enc(%q) = %q", v, prev, e)
		}
		seen[e] = v
	}
	if enc("abc") != "abc" {
		t.Errorf("a safe identifier is rewritten: %q", enc("abc"))
	}
}
