package leader_test

import (
	"errors"
	"testing"

	"roster-sidecar/leader"
)

func TestHolderIdentityRoundTrip(t *testing.T) {
	for _, tc := range []struct{ id, url, holder string }{
		{"pod-a", "", "pod-a"},
		{"pod-a", "http://10.1.2.3:5380", "pod-a http://10.1.2.3:5380"},
		{"roster-sidecar-7d9f-abcde", "https://[fd00::1]:5380/", "roster-sidecar-7d9f-abcde https://[fd00::1]:5380/"},
	} {
		h := leader.HolderIdentity(tc.id, tc.url)
		if h != tc.holder {
			t.Errorf("HolderIdentity(%q, %q) = %q, want %q", tc.id, tc.url, h, tc.holder)
		}
		if id, u := leader.ParseHolder(h); id != tc.id || u != tc.url {
			t.Errorf("ParseHolder(%q) = %q, %q, want %q, %q", h, id, u, tc.id, tc.url)
		}
	}
}

func TestParseHolderWithoutURL(t *testing.T) {
	// Identities of instances that advertise nothing, or of other
	// programs: all identity.
	for _, h := range []string{"", "pod-a", "my pod", "pod-a ftp://x", "pod-a http://", "pod-a http://x/path", " http://x:1"} {
		if id, u := leader.ParseHolder(h); id != h || u != "" {
			t.Errorf("ParseHolder(%q) = %q, %q, want it whole and no URL", h, id, u)
		}
	}
}

func TestCheckAdvertiseURL(t *testing.T) {
	for _, ok := range []string{"http://10.1.2.3:5380", "https://roster.example:5380/", "http://[::1]:5380", "http://localhost"} {
		if err := leader.CheckAdvertiseURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "10.1.2.3:5380", "ftp://x", "http://", "http://:5380", "http://u:p@x", "http://x/api", "http://x?a=b", "http://x#f", "http://x:5380 ", "http://x:port"} {
		if err := leader.CheckAdvertiseURL(bad); !errors.Is(err, leader.ErrAdvertiseURL) {
			t.Errorf("%q: got %v, want ErrAdvertiseURL", bad, err)
		}
	}
}
