package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestT checks the benchmark's runner keeps testing's rules: Fatal ends
// the step, Errorf does not, cleanups run last first even after Fatal or a
// panic, and a failed sub-step fails its parent.
func TestT(t *testing.T) {
	var log bytes.Buffer
	var order []string
	ok := runMain(&log, "bench", func(b *T) {
		b.Cleanup(func() { order = append(order, "root cleanup") })
		b.Run("fatal", func(b *T) {
			b.Cleanup(func() { order = append(order, "fatal cleanup 1") })
			b.Cleanup(func() { order = append(order, "fatal cleanup 2") })
			b.Fatalf("stop\nhere")
			order = append(order, "after Fatalf")
		})
		b.Run("panic", func(b *T) {
			b.Cleanup(func() { order = append(order, "panic cleanup") })
			panic("boom")
		})
		passed := b.Run("pass", func(b *T) { b.Logf("fine") })
		order = append(order, "pass "+map[bool]string{true: "passed", false: "failed"}[passed])
		b.Errorf("error")
		order = append(order, "after Errorf")
	})
	if ok {
		t.Error("runMain passed with failed steps")
	}
	want := "fatal cleanup 2,fatal cleanup 1,panic cleanup,pass passed,after Errorf,root cleanup"
	if got := strings.Join(order, ","); got != want {
		t.Errorf("order:\n got %s\nwant %s", got, want)
	}
	for _, line := range []string{
		"=== RUN   bench/fatal\n",
		" bench/fatal: stop\n        here\n",
		"--- FAIL: bench/fatal (",
		"bench/panic: panic: boom\n",
		"--- FAIL: bench/panic (",
		" bench/pass: fine\n",
		"--- PASS: bench/pass (",
		"--- FAIL: bench (",
	} {
		if !strings.Contains(log.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, log.String())
		}
	}
}

// TestWriteReport checks that the report replaces only the text between
// its markers, and starts a new file with a title.
func TestWriteReport(t *testing.T) {
	file := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := writeReport(file, "first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if want := "# Benchmarks\n\n" + reportBegin + "\n\nfirst\n" + reportEnd + "\n"; string(b) != want {
		t.Fatalf("new file:\n%s\nwant:\n%s", b, want)
	}
	edited := "intro\n" + reportBegin + "\nold\n" + reportEnd + "\nanalysis\n"
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(file, "second\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(file)
	if want := "intro\n" + reportBegin + "\n\nsecond\n" + reportEnd + "\nanalysis\n"; string(b) != want {
		t.Fatalf("rewritten file:\n%s\nwant:\n%s", b, want)
	}
}
