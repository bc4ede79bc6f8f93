package rosterhttp

import (
	"unicode/utf8"

	"golang.org/x/text/unicode/bidi"
)

// stringprepBidi reports whether s passes the bidi rule of stringprep (RFC
// 3454 section 6), which Prosody's and ejabberd's nodeprep and nameprep
// apply to a whole localpart or domainpart: a string with a right-to-left
// character (bidi class R or AL) has no left-to-right one (L), and starts
// and ends with a right-to-left one. PRECIS (RFC 5893) is more lenient: it
// accepts, say, "שלום1" or a final combining mark, which both servers then
// refuse. Tested on every part of one code point (testdata).
func stringprepBidi(s string) bool {
	var rtl, ltr bool
	for _, r := range s {
		switch bidiClass(r) {
		case bidi.R, bidi.AL:
			rtl = true
		case bidi.L:
			ltr = true
		}
	}
	if !rtl {
		return true
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return !ltr && isRTL(first) && isRTL(last)
}

func bidiClass(r rune) bidi.Class {
	p, _ := bidi.LookupRune(r)
	return p.Class()
}

func isRTL(r rune) bool {
	c := bidiClass(r)
	return c == bidi.R || c == bidi.AL
}
