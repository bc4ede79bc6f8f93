package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSignHeaderMatchesTheDocs checks the harness's own signer, written from
// PROTOCOL.md, against the test vector there.
func TestSignHeaderMatchesTheDocs(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "`TestSignatureDocVector`")
	_, block, _ := strings.Cut(after, "```text\n")
	block, _, _ = strings.Cut(block, "```")
	v := map[string]string{}
	for line := range strings.Lines(block) {
		name, value, _ := strings.Cut(line, ":")
		v[name] = strings.TrimSpace(value)
	}
	if v["secret"] == "" || v["timestamp"] == "" {
		t.Fatalf("no test vector found in PROTOCOL.md: %q", v)
	}
	ts, err := time.Parse(time.RFC3339, "2026-01-01T00:00:00Z")
	if err != nil || v["timestamp"] != "1767225600" {
		t.Fatalf("the test vector's timestamp is %s, this test expects 1767225600 (%v)", v["timestamp"], err)
	}
	h := SignHeader(v["secret"], ts, v["method"], v["target"], []byte(v["body"]))
	for _, name := range []string{"X-Roster-Sidecar-Timestamp", "X-Roster-Sidecar-Signature"} {
		if got := h.Get(name); got != v[name] {
			t.Errorf("%s: %q, the docs say %q", name, got, v[name])
		}
	}
}
