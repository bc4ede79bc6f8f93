package rostersync

import (
	"strings"
	"testing"

	"mellium.im/xmpp/jid"
)

// normaliseJIDSlow is normaliseJID without the fast path.
func normaliseJIDSlow(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.Bare().String()
}

func TestNormaliseJIDFastPath(t *testing.T) {
	for _, s := range []string{
		"a@b", "contact12@example.test", "example.test", "a.b-c_d@e-f.g", "1.2.3.4", "a@1.2.3.4",
		"a@example.test.", "a@xn--caf-dma.test", "xn--a@b", "@b", "a@", "a@@b", "a@b@c", "", ".", "..", "a@.b", "a@b..c",
		"-a@-b-", "a@" + strings.Repeat("x", 1100), strings.Repeat("y", 1100) + "@b", "a@b.c/", "UPPER@Example.TEST",
	} {
		if got, want := normaliseJID(s), normaliseJIDSlow(s); got != want {
			t.Errorf("normaliseJID(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNormaliseJID(f *testing.F) {
	for _, s := range []string{"a@b", "a@example.test.", "a@xn--caf-dma.test", "a@b..c", "1.2.3.4", "-@-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := normaliseJID(s), normaliseJIDSlow(s); got != want {
			t.Errorf("normaliseJID(%q) = %q, want %q", s, got, want)
		}
	})
}
