package roster

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestFoldJID(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"marie@example.test", "marie@example.test"},
		{"JUDY@Example.TEST", "judy@example.test"},
		{"straße@example.test", "strasse@example.test"},
		{"STRASSE@example.test", "strasse@example.test"},
		{"\u1E9E@x", "ss@x"}, // capital sharp s
		{"σς@x", "σσ@x"},
		{"ΣΑΣ@x", "σασ@x"},
		{"ᾳ@x", "αι@x"},
		{"aͅ@x", "aι@x"},
		{"İ@x", "i̇@x"},
		{"a\u00ADb\u200Dc\uFE0F@x", "abc@x"}, // table B.1: mapped to nothing
		{"ＢＯＢ@x", "bob@x"},                   // NFKC
		{"e\u0301@x", "é@x"},                 // composed
		{"\u13A0@x", "\u13A0@x"},             // Cherokee folds to uppercase
		{"\uAB70@x", "\u13A0@x"},
		{"\u13F8@x", "\u13F0@x"},
		{"a@straße.test", "a@strasse.test"},
		{"\xff@x", "\uFFFD@x"},
	} {
		if got := FoldJID(tt.in); got != tt.want {
			t.Errorf("FoldJID(%q) = %q (%U), want %q (%U)", tt.in, got, []rune(got), tt.want, []rune(tt.want))
		}
	}
}

// TestFoldJIDServerForms checks FoldJID against what Prosody and ejabberd
// store for each PRECIS-normalised JID part that their stringprep changes
// (testdata/stringprep.txt): the fold of the part the backend names and the
// fold of the part the server returns are equal, and equal to the latter.
func TestFoldJIDServerForms(t *testing.T) {
	f, err := os.Open("testdata/stringprep.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("bad line %q", line)
		}
		precis, server := fields[1], fields[2]
		jid := "x@" + precis
		serverJID := "x@" + server
		if fields[0] == "nodeprep" {
			jid, serverJID = precis+"@example.test", server+"@example.test"
		}
		if a, b := FoldJID(jid), FoldJID(serverJID); a != b || b != serverJID {
			t.Errorf("%s %q (%U): fold %q, the server's form %q folds to %q", fields[0], precis, []rune(precis), a, serverJID, b)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("only %d cases", n)
	}
}

func FuzzFoldJID(f *testing.F) {
	for _, s := range []string{"a@b", "straße@x", "ΣΑΣ@x", "\uAB70", "ᾳ", "ＢＯＢ", "\u00AD", "ǅ", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := FoldJID(s)
		if again := FoldJID(k); again != k {
			t.Fatalf("FoldJID(%q) = %q, but FoldJID(%q) = %q", s, k, k, again)
		}
	})
}
