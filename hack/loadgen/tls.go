package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// tlsHandshake measures one full TLS 1.3 handshake with no session resumption, server and
// client in this process over net.Pipe, so the rate is the CPU of both ends together: an upper
// bound on the handshakes one core can serve. The certificate is ECDSA P-256, as cert-manager
// issues by default for an Ingress or a Gateway.
func tlsHandshake() (newWorkerFunc, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "latchkey.example"},
		DNSNames:     []string{"latchkey.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	srvCfg := &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
	cliCfg := &tls.Config{RootCAs: roots, ServerName: "latchkey.example", MinVersion: tls.VersionTLS13}
	return func(context.Context, int) (op, error) {
		return func(ctx context.Context) error {
			c, s := net.Pipe()
			defer func() { _ = c.Close() }() // net.Pipe ends: Close cannot fail usefully
			defer func() { _ = s.Close() }()
			srv := tls.Server(s, srvCfg)
			done := make(chan error, 1)
			go func() { done <- srv.HandshakeContext(ctx) }()
			cerr := tls.Client(c, cliCfg).HandshakeContext(ctx)
			serr := <-done
			if cerr != nil {
				return fmt.Errorf("tls client: %w", cerr)
			}
			if serr != nil {
				return fmt.Errorf("tls server: %w", serr)
			}
			return nil
		}, nil
	}, nil
}
