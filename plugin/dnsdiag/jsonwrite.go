package dnsdiag

import "unicode/utf8"

// The package writes JSON by appending to byte slices rather than through
// encoding/json, so that logging does not allocate per field. These helpers
// turn arbitrary text into JSON string literals for all of it.

// appendJSONString appends s to b as a JSON string literal, quotes included.
// It escapes what RFC 8259 requires (quote, backslash, control characters)
// and replaces each byte of invalid UTF-8 with \ufffd, so the result is valid
// JSON whatever s holds: DNS names and TXT strings can carry any bytes.
func appendJSONString(b []byte, s string) []byte {
	return append(appendJSONText(append(b, '"'), s), '"')
}

// appendJSONText appends s escaped as appendJSONString does, without the
// quotes: for a string literal assembled from several parts.
func appendJSONText(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0 // s[start:i] is pending text that needs no escaping
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		} else if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default: // a byte that does not start valid UTF-8
			b = append(b, `\ufffd`...)
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}
