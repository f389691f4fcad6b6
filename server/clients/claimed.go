package clients

import (
	"encoding/json"
	"net/http"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey-dev/latchkey/server/httpx"
	"github.com/latchkey-dev/latchkey/server/internal/jwsalg"
)

// maxClaimedID bounds the client_id ClaimedID returns: an OAuthClient's clientID is at most 128
// bytes (the CRD), so nothing longer can be a registered client.
const maxClaimedID = 128

// ClaimedID is the client_id a request names, whether or not it authenticates: the Basic user
// name, else the client_id parameter, else the unverified sub of a client assertion. It is
// what failed authentications are counted against (SECURITY-CASES 48), and is never trusted
// for anything else. "" when the request names none or one that cannot be registered.
func ClaimedID(r *http.Request, form httpx.Form) string {
	id := ""
	if authz := r.Header.Values("Authorization"); len(authz) == 1 {
		id, _, _ = ParseBasic(authz[0])
	}
	if id == "" {
		id = form.Get(ParamClientID)
	}
	if raw := form.Get(ParamClientAssertion); id == "" && raw != "" && len(raw) <= maxAssertionLength && strings.Count(raw, ".") == 2 {
		if jws, err := jose.ParseSignedCompact(raw, jwsalg.Client); err == nil {
			var c struct {
				Subject string `json:"sub"`
			}
			if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) == nil {
				id = c.Subject
			}
		}
	}
	if len(id) > maxClaimedID {
		return ""
	}
	return id
}
