package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "dev mode needs nothing and derives the issuer from the listen address",
			args: []string{"--dev"},
			check: func(t *testing.T, c Config) {
				if c.Issuer != "http://localhost:8080" || c.Namespace != "default" || c.Manifests != "config/samples" {
					t.Fatalf("got issuer %q namespace %q manifests %q", c.Issuer, c.Namespace, c.Manifests)
				}
			},
		},
		{
			name: "dev mode keeps an explicit listen host in the issuer",
			args: []string{"--dev", "--listen", "127.0.0.1:9000"},
			check: func(t *testing.T, c Config) {
				if c.Issuer != "http://127.0.0.1:9000" {
					t.Fatalf("issuer = %q", c.Issuer)
				}
			},
		},
		{
			name: "cluster mode takes the namespace and Redis URL from the environment",
			args: []string{"--issuer", "https://auth.example.com"},
			env:  map[string]string{"POD_NAMESPACE": "latchkey-system", "LATCHKEY_REDIS_URL": "redis://redis:6379/0"},
			check: func(t *testing.T, c Config) {
				if c.Namespace != "latchkey-system" || c.RedisURL != "redis://redis:6379/0" || c.LeaderElectionNamespace != "latchkey-system" {
					t.Fatalf("got %+v", c)
				}
				if c.ClientSecretGracePeriod != 24*time.Hour || c.SigningKey != "default" || c.UsersSecret != "latchkey-users" {
					t.Fatalf("defaults: %+v", c)
				}
			},
		},
		{
			name:    "cluster mode without an issuer is refused with the fix",
			args:    []string{"--namespace", "x", "--redis-url", "redis://r:6379"},
			wantErr: "--issuer is required",
		},
		{
			name:    "cluster mode without Redis is refused",
			args:    []string{"--namespace", "x", "--issuer", "https://a.example.com"},
			wantErr: "--redis-url",
		},
		{
			name: "controller mode needs neither issuer nor Redis",
			args: []string{"--namespace", "x", "--mode", "controller"},
		},
		{
			name:    "an http issuer outside loopback is refused (RFC 8414 §2)",
			args:    []string{"--namespace", "x", "--redis-url", "redis://r", "--issuer", "http://auth.example.com"},
			wantErr: "must use https",
		},
		{
			name:    "an issuer with a trailing slash is refused, since issuers compare as exact strings",
			args:    []string{"--namespace", "x", "--redis-url", "redis://r", "--issuer", "https://auth.example.com/"},
			wantErr: "trailing slash",
		},
		{
			name:    "an issuer with a query is refused",
			args:    []string{"--namespace", "x", "--redis-url", "redis://r", "--issuer", "https://auth.example.com?x=1"},
			wantErr: "without query",
		},
		{
			name:    "an unknown mode is refused",
			args:    []string{"--dev", "--mode", "both"},
			wantErr: "--mode must be",
		},
		{
			name:    "a bad trusted proxy CIDR is refused",
			args:    []string{"--dev", "--trusted-proxies", "10.0.0.0/8,nonsense"},
			wantErr: "--trusted-proxies",
		},
		{
			name: "trusted proxies and watch namespaces are comma-separated lists",
			args: []string{"--dev", "--trusted-proxies", "10.0.0.1/8, 192.168.0.0/16", "--watch-namespaces", "shop, payments,"},
			check: func(t *testing.T, c Config) {
				if len(c.TrustedProxies) != 2 || c.TrustedProxies[0].String() != "10.0.0.0/8" {
					t.Fatalf("proxies = %v", c.TrustedProxies)
				}
				if strings.Join(c.WatchNamespaces, "|") != "shop|payments" {
					t.Fatalf("watch = %v", c.WatchNamespaces)
				}
			},
		},
		{
			name:    "a negative --redis-wait-replicas is refused",
			args:    []string{"--dev", "--redis-wait-replicas", "-1"},
			wantErr: "--redis-wait-replicas",
		},
		{
			name:    "a WAIT without a timeout is refused: it could block forever",
			args:    []string{"--dev", "--redis-wait-replicas", "1", "--redis-wait-timeout", "0s"},
			wantErr: "--redis-wait-timeout must be positive",
		},
		{
			name: "--redis-wait-replicas takes its timeout",
			args: []string{"--dev", "--redis-wait-replicas", "2", "--redis-wait-timeout", "250ms"},
			check: func(t *testing.T, c Config) {
				if c.RedisWaitReplicas != 2 || c.RedisWaitTimeout != 250*time.Millisecond {
					t.Fatalf("wait = %d %v", c.RedisWaitReplicas, c.RedisWaitTimeout)
				}
			},
		},
		{
			name:    "stray positional arguments are refused",
			args:    []string{"--dev", "serve"},
			wantErr: "unexpected arguments",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env["POD_NAMESPACE"])
			t.Setenv("LATCHKEY_REDIS_URL", tc.env["LATCHKEY_REDIS_URL"])
			c, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
