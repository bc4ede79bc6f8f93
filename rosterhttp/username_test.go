package rosterhttp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseUsername(t *testing.T) {
	const domain = "example.test"
	tests := []struct {
		in   string
		want string // "" means an error is expected
		err  string // substring of the expected error
	}{
		{in: "john", want: "john"},
		{in: "hash#tag", want: "hash#tag"},
		{in: "q?mark", want: "q?mark"},
		{in: "josé", want: "josé"},
		{in: "jose\u0301", want: "josé"}, // decomposed é is composed (NFC)
		{in: "JOHN", want: "john"},
		{in: "ＪＯＨＮ", want: "john"}, // full-width letters are width-mapped
		{in: "john@example.test", want: "john"},
		{in: "john@EXAMPLE.test", want: "john"},
		{in: "John@example.test.", want: "john"},
		{in: "...", want: "..."},
		{in: "a..b", want: "a..b"},
		{in: "a%2Fb", want: "a%2fb"}, // case-mapped like any letter
		{in: "100%", want: "100%"},
		{in: "a+b=c", want: "a+b=c"},
		{in: strings.Repeat("a", 1023), want: strings.Repeat("a", 1023)},

		{in: "", err: `invalid username "": it is empty`},
		{in: "..", err: `"." and ".." cannot be sent to the backend`},
		{in: ".", err: `"." and ".." cannot be sent to the backend`},
		{in: "..@example.test", err: `"." and ".." cannot be sent to the backend`},
		{in: "john@other.test", err: `invalid username "john@other.test": its domain is not example.test`},
		{in: "john@", err: "its domain is not example.test"},
		{in: "john@exa mple.test", err: "its domain is not example.test"},
		{in: "@example.test", err: "its localpart is empty"},
		{in: "john@example.test/res", err: "it has a resource"},
		{in: "a@b@example.test", err: "its domain is not"},
		{in: "a/b", err: `invalid username "a/b": it contains '/'`},
		{in: "a'b", err: `it contains '\''`},
		{in: `a"b`, err: `it contains '"'`},
		{in: "a&b", err: "it contains '&'"},
		{in: "a:b", err: "it contains ':'"},
		{in: "a<b", err: "it contains '<'"},
		{in: "a>b", err: "it contains '>'"},
		{in: "a\uff1ab", err: "forbidden characters"}, // full-width colon maps to ':'
		{in: "john doe", err: "it contains a space"},
		{in: " john", err: "it contains a space"},
		{in: "john\t", err: "it contains a space"},
		{in: "jo\u00a0hn", err: "it contains a space"},
		{in: "jo\x01hn", err: "it contains a control character"},
		{in: "jo\x7fhn", err: "it contains a control character"},
		{in: "jo\u200bhn", err: "not a valid XMPP localpart"}, // zero width space
		{in: "\u2163", err: "not a valid XMPP localpart"},     // roman numeral four
		{in: "\xff", err: "not valid UTF-8"},
		{in: strings.Repeat("a", 1024), err: "longer than 1023 bytes"},
	}
	for _, tt := range tests {
		got, err := ParseUsername(tt.in, domain)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseUsername(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseUsername(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseUsernameBadDomain(t *testing.T) {
	_, err := ParseUsername("john", "exa mple")
	if err == nil || !strings.Contains(err.Error(), `user domain "exa mple" is not valid`) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseUsernameLongInputQuoted(t *testing.T) {
	for _, in := range []string{strings.Repeat("é", 600) + "/", "a" + strings.Repeat("é", 600) + "/"} {
		_, err := ParseUsername(in, "example.test")
		if err == nil {
			t.Fatal("no error")
		}
		if msg := err.Error(); len(msg) > 300 || !utf8.ValidString(msg) || strings.Contains(msg, `\x`) {
			t.Errorf("error text %q: the name should be shortened at a character boundary", msg)
		}
	}
}
