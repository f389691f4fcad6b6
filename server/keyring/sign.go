package keyring

import "fmt"

// SignAccessToken signs payload, the JSON claims of an access token, as a compact JWS whose
// protected header holds the key's alg, its kid and typ "at+jwt" (RFC 9068 §2.1), with the
// go-jose signer built once per key (NewSigner).
func (s *Signer) SignAccessToken(payload []byte) (string, error) {
	jws, err := s.Signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize: %w", err)
	}
	return raw, nil
}

// SignIDToken signs payload, the JSON claims of an OpenID Connect ID token, as a compact JWS
// whose protected header holds the key's alg, its kid and typ "JWT".
func (s *Signer) SignIDToken(payload []byte) (string, error) {
	jws, err := s.IDToken.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize: %w", err)
	}
	return raw, nil
}
