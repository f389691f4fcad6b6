package verifier_test

import (
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerify and BenchmarkRawES256Verify verify the same ES256 token: the first through
// Verifier.Verify with a warm key cache (every check included), the second with go-jose alone
// (ParseSignedCompact + Verify, no claim checks). Their ns/op ratio is the cost of the checks.
func BenchmarkVerify(b *testing.B) {
	es := testKey(b, "ES256")
	iss := newTestIssuer(b, es)
	v := newVerifier(b, iss, newClock())
	tok := mint(b, es, iss.claims(), nil)
	ctx := b.Context()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawES256Verify(b *testing.B) {
	es := testKey(b, "ES256")
	iss := newTestIssuer(b, es)
	tok := mint(b, es, iss.claims(), nil)
	pub := es.Signer.Public()
	algs := []jose.SignatureAlgorithm{jose.ES256}
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(tok, algs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyParallel is Verify under concurrency: the key cache is read without locks.
func BenchmarkVerifyParallel(b *testing.B) {
	es := testKey(b, "ES256")
	iss := newTestIssuer(b, es)
	v := newVerifier(b, iss, newClock())
	tok := mint(b, es, iss.claims(), nil)
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
