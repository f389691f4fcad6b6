package server

import (
	"net/http"
	"strconv"

	"github.com/latchkey-dev/latchkey/server/oautherr"
)

// handleJWKS serves the published keys of every SigningKey in the namespace: public members
// only, one key per kid (SECURITY-CASES 70), with Cache-Control max-age no longer than the
// smallest prePublish, so a verifier that honours it knows a Next key before it signs
// (SECURITY-CASES 75). The document comes from the JWKS ConfigMaps, the same source every
// replica reads, so a token from one replica verifies with the JWKS of any other.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if !s.synced() {
		// Reading an unsynced cache would block; a verifier retries a 503.
		s.writeError(w, r, oautherr.Unavailable("the key set is not loaded yet, retry later", nil))
		return
	}
	jwks, err := s.keys.JWKS(r.Context())
	if err != nil {
		s.writeError(w, r, oautherr.Unavailable("the key set is unavailable, retry later", err))
		return
	}
	s.corsForRegisteredOrigin(w, r)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwks.MaxAge.Seconds())))
	_, _ = w.Write(jwks.Document)
}
