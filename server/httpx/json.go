package httpx

import "encoding/json"

// AppendJSONString appends s as a JSON string, exactly as encoding/json writes it. The
// hand-written encoders of the fixed-shape responses and claims use it: strings of printable
// ASCII that encoding/json leaves alone (everything but '"', '\\' and its HTML escapes '<',
// '>', '&') are copied as they are, and any other string, rare in a token response, goes
// through encoding/json, so the escaping rules (control characters, invalid UTF-8, U+2028)
// are exactly its own.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendJSONStrings appends ss as a JSON array of strings (null when ss is nil, as
// encoding/json writes a nil slice).
func AppendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}
