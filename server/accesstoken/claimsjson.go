package accesstoken

import (
	"strconv"

	"github.com/latchkey-dev/latchkey/server/httpx"
)

// appendJSON appends the claims as encoding/json would marshal them, byte for byte (the tests
// compare the two for every field), without reflection: the claims of every token minted go
// through here, and encoding/json spent more time finding the fields than writing them.
func (c *Claims) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = httpx.AppendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = httpx.AppendJSONString(b, c.Subject)
	b = append(b, `,"aud":`...)
	if len(c.Audience) == 1 {
		b = httpx.AppendJSONString(b, c.Audience[0])
	} else {
		b = httpx.AppendJSONStrings(b, c.Audience)
	}
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry, 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, `,"jti":`...)
	b = httpx.AppendJSONString(b, c.ID)
	b = append(b, `,"client_id":`...)
	b = httpx.AppendJSONString(b, c.ClientID)
	b = append(b, `,"scope":`...)
	b = httpx.AppendJSONString(b, c.Scope)
	if len(c.Roles) > 0 {
		b = append(b, `,"roles":`...)
		b = httpx.AppendJSONStrings(b, c.Roles)
	}
	if c.AuthTime != 0 {
		b = append(b, `,"auth_time":`...)
		b = strconv.AppendInt(b, c.AuthTime, 10)
	}
	return append(b, '}')
}
