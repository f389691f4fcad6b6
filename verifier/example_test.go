package verifier_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/verifier"
)

// A resource server protects its routes: any valid token for /api/me, the notes.read scope for
// /api/notes, and the admin role for /api/admin.
func Example() {
	ctx := context.Background()
	v, err := verifier.New(ctx, "https://auth.example.com",
		verifier.WithAudience("https://notes.example.com"))
	if err != nil {
		log.Fatal(err)
	}

	me := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verifier.ClaimsFromContext(r.Context())
		_, _ = fmt.Fprintf(w, "hello %s (client %s)\n", claims.Subject(), claims.ClientID())
	})
	notes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprintln(w, "[]") })
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = fmt.Fprintln(w, "ok") })

	mux := http.NewServeMux()
	mux.Handle("GET /api/me", v.Middleware(me))
	mux.Handle("GET /api/notes", v.RequireScope("notes.read")(notes))
	mux.Handle("GET /api/admin", v.RequireRole("admin")(admin))
	srv := &http.Server{Addr: ":8081", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// Verify with keys from a mounted JWKS ConfigMap, and tell rejections apart with errors.Is.
func ExampleWithJWKSFile() {
	// The issuer's key; in a cluster the controller publishes its public half in the
	// "<signingkey>-jwks" ConfigMap, mounted here at dir/jwks.json.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &priv.PublicKey, KeyID: "key-1", Algorithm: "ES256", Use: "sig"},
	}})
	dir, _ := os.MkdirTemp("", "jwks")
	defer func() { _ = os.RemoveAll(dir) }()
	_ = os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o644)

	v, err := verifier.New(context.Background(), "https://auth.example.com",
		verifier.WithAudience("https://notes.example.com"),
		verifier.WithJWKSFile(filepath.Join(dir, "jwks.json")))
	if err != nil {
		log.Fatal(err)
	}

	// An access token as Latchkey issues it.
	sign := func(exp time.Time) string {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256,
			Key: jose.JSONWebKey{Key: priv, KeyID: "key-1"}}, (&jose.SignerOptions{}).WithType("at+jwt"))
		claims, _ := json.Marshal(map[string]any{
			"iss": "https://auth.example.com", "aud": "https://notes.example.com",
			"sub": "alice", "client_id": "notes-web", "jti": "4f1c", "scope": "openid notes.read",
			"roles": []string{"admin"}, "iat": time.Now().Unix(), "exp": exp.Unix(),
		})
		jws, _ := signer.Sign(claims)
		token, _ := jws.CompactSerialize()
		return token
	}

	claims, err := v.Verify(context.Background(), sign(time.Now().Add(15*time.Minute)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject(), claims.Scopes(), claims.HasRole("admin"))

	_, err = v.Verify(context.Background(), sign(time.Now().Add(-time.Hour)))
	fmt.Println(errors.Is(err, verifier.ErrExpired))
	// Output:
	// alice [openid notes.read] true
	// true
}
