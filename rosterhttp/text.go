package rosterhttp

import (
	"strings"
	"unicode/utf8"
)

// xmlText returns s as the XMPP servers store and return it when a roster
// SET carries it as a name or a group, so that the next sync compares
// equal values and rewrites nothing:
//
//   - bytes that are not UTF-8 and code points that XML 1.0 forbids
//     (controls other than tab, line feed and carriage return; U+FFFE,
//     U+FFFF) become U+FFFD, as the SET encoder writes them;
//   - a carriage return, alone or before a line feed, becomes a line feed,
//     as XML parsers read an unescaped one: Prosody returns names and
//     groups, ejabberd groups, with the carriage return unescaped.
//
// Everything else, other white space and unnormalised Unicode included, is
// kept: both servers return it as sent.
func xmlText(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x80 || c == '\t' || c == '\n' {
			i++
			continue
		}
		if c >= 0x80 {
			r, w := utf8.DecodeRuneInString(s[i:])
			if xmlChar(r) && !(r == utf8.RuneError && w == 1) {
				i += w
				continue
			}
		}
		break
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteString(s[:i])
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\r':
			b.WriteByte('\n')
			if i+1 < len(s) && s[i+1] == '\n' {
				w++
			}
		case r == utf8.RuneError && w == 1, !xmlChar(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+w])
		}
		i += w
	}
	return b.String()
}

// xmlChar reports whether r is in XML 1.0's character range.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
