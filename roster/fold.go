package roster

import (
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// FoldJID returns the form under which an XMPP server that prepares JIDs
// with stringprep (RFC 6122: nodeprep for the localpart, nameprep for the
// domainpart) identifies the contact whose bare JID is jid. Prosody 13 and
// ejabberd 24.12 both do: given straße@example.test (the PRECIS form, RFC
// 7622, which keeps ß) they store and return strasse@example.test. Two
// contacts with the same fold are one item of a roster on those servers,
// and a server's item is the backend's contact when their folds are equal.
//
// FoldJID does what stringprep's mapping and normalisation do: it drops
// what table B.1 maps to nothing (soft hyphen, zero-width joiners, variation
// selectors ...), folds case fully (table B.2: ß and ẞ → ss, ς → σ, ᾳ → αι,
// İ → i̇ ...) and normalises to NFKC. It uses Unicode's current case folding,
// where stringprep is frozen at Unicode 3.2, so it may merge a few JIDs that
// a server keeps apart (Cherokee, whose lowercase letters came later) but
// never the other way for a PRECIS-normalised JID: for every such
// localpart and domainpart of one code point (alone and next to a letter)
// FoldJID(x) equals FoldJID of what Prosody's and ejabberd's nodeprep and
// nameprep make of x (TestFoldJIDServerForms holds the cases where they
// change it). It checks nothing: prohibited characters and the bidi rule
// are for the parser and the server.
func FoldJID(jid string) string {
	if foldASCII(jid) {
		return strings.ToLower(jid)
	}
	s := strings.Map(dropB1, jid)
	s = norm.NFKC.String(s)
	s = cases.Fold().String(s)
	s = strings.Map(cherokeeUpper, s)
	return norm.NFKC.String(s)
}

// foldASCII reports whether s is ASCII, which NFKC leaves alone and
// case folding only lowercases.
func foldASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// dropB1 drops the code points of RFC 3454 table B.1 ("commonly mapped to
// nothing").
func dropB1(r rune) rune {
	switch r {
	case 0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF:
		return -1
	}
	if r >= 0xFE00 && r <= 0xFE0F {
		return -1
	}
	return r
}

// cherokeeUpper maps Cherokee lowercase letters to their uppercase, the
// case folding of Unicode's CaseFolding.txt. golang.org/x/text/cases swaps
// the two cases of Cherokee instead, so its Fold is not idempotent there.
func cherokeeUpper(r rune) rune {
	switch {
	case r >= 0xAB70 && r <= 0xABBF:
		return r - 0xAB70 + 0x13A0
	case r >= 0x13F8 && r <= 0x13FD:
		return r - 8
	}
	return r
}
