package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// T runs one step of the benchmark and its sub-steps the way testing.T runs
// a test and its subtests, so that the harness (harness.TB) and the
// measuring code keep testing's rules: Fatal and Fatalf end the step's
// goroutine, Errorf marks the step failed and goes on, and cleanups run when
// the step ends, the last registered first. Its log lines go to the
// program's log, a line "=== RUN" when a step starts and "--- PASS" or
// "--- FAIL" when it ends, as go test -v writes them.
type T struct {
	name string
	log  *logger

	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

// logger writes log lines; continuation lines of a message are indented by
// eight spaces, so that `grep -vE '^ {8}'` keeps one line per message.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) print(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, s)
}

// runMain runs f as the step name, writing the log to w, and reports
// whether it passed.
func runMain(w io.Writer, name string, f func(t *T)) bool {
	t := &T{name: name, log: &logger{w: w}}
	return t.run(f)
}

// Run runs f as the sub-step name of t, waits for it, and reports whether
// it passed; a failed sub-step fails t too.
func (t *T) Run(name string, f func(t *T)) bool {
	sub := &T{name: t.name + "/" + name, log: t.log}
	ok := sub.run(f)
	if !ok {
		t.fail()
	}
	return ok
}

// run calls f and then the cleanups, each in a goroutine of its own so that
// Fatal (runtime.Goexit) ends only that goroutine. A panic fails the step
// and is logged with its stack, and the cleanups still run: they stop the
// servers and the sidecar, which run in process groups of their own.
func (t *T) run(f func(t *T)) bool {
	t.log.print("=== RUN   " + t.name + "\n")
	start := time.Now()
	t.guard(func() { f(t) })
	t.mu.Lock()
	cleanups := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		t.guard(cleanups[i])
	}
	status := "PASS"
	if t.Failed() {
		status = "FAIL"
	}
	t.log.print(fmt.Sprintf("--- %s: %s (%.2fs)\n", status, t.name, time.Since(start).Seconds()))
	return !t.Failed()
}

// guard calls f in a new goroutine and waits until it returns, ends with
// runtime.Goexit, or panics.
func (t *T) guard(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		f()
	}()
	<-done
}

func (t *T) fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

// Name is the step's name, its parents' first: bench/prosody.
func (t *T) Name() string { return t.name }

// Helper does nothing: log lines name the step, not the source line.
func (t *T) Helper() {}

// Failed reports whether the step or one of its sub-steps failed.
func (t *T) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Cleanup registers f to run when the step ends.
func (t *T) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// Logf writes a line to the log, like testing.T.Logf.
func (t *T) Logf(format string, args ...any) {
	msg := strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
	msg = strings.ReplaceAll(msg, "\n", "\n        ")
	t.log.print("    " + time.Now().Format("15:04:05") + " " + t.name + ": " + msg + "\n")
}

// Errorf logs and marks the step failed.
func (t *T) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.fail()
}

// Fatal logs, marks the step failed and ends the calling goroutine.
func (t *T) Fatal(args ...any) {
	t.Logf("%s", fmt.Sprint(args...))
	t.fail()
	runtime.Goexit()
}

// Fatalf logs, marks the step failed and ends the calling goroutine.
func (t *T) Fatalf(format string, args ...any) {
	t.Logf(format, args...)
	t.fail()
	runtime.Goexit()
}
