package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TempDir returns a fresh directory removed at the end of the test unless
// ROSTER_SIDECAR_E2E_KEEP is set. t.TempDir is not used because its name
// can be too long for a unix socket path (Prosody's admin socket lives there).
func TempDir(t TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if envBool(envKeep) {
			t.Logf("keeping %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// FreePorts reserves n distinct TCP ports on 127.0.0.1. They are released
// before returning, so another process could in theory take one first.
func FreePorts(t TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserving a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// syncBuffer is a goroutine-safe bytes.Buffer used to collect process output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is an external command started by the tests: a server or the
// sidecar. It runs in its own process group so that stopping it also stops
// the helpers it forks (ejabberdctl runs erl, which runs beam.smp).
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

// startProcess starts cmd with stdout and stderr collected, and registers
// a cleanup that stops it and, if the test failed, logs its output.
func startProcess(t TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.WaitDelay == 0 {
		// Children keep the output pipe open after the leader exits;
		// do not wait for them forever.
		cmd.WaitDelay = 15 * time.Second
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s (%s): %v", name, cmd, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	started := time.Now()
	t.Cleanup(func() {
		stopping := time.Now()
		p.Stop(10 * time.Second)
		t.Logf("%s: ran %v, stopped in %v", name, stopping.Sub(started).Round(time.Millisecond), time.Since(stopping).Round(time.Millisecond))
		if t.Failed() {
			p.Dump(t)
		}
	})
	return p
}

// Output returns everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// maxDump bounds how much of a process's output Dump logs (the end).
const maxDump = 64 << 10

// Dump writes the process output (its last 64 KiB) to the test log.
func (p *Process) Dump(t TB) {
	t.Helper()
	out := p.Output()
	if len(out) > maxDump {
		out = "[... " + strconv.Itoa(len(out)-maxDump) + " bytes cut ...]\n" + out[len(out)-maxDump:]
	}
	t.Logf("---- output of %s (%s) ----\n%s\n---- end of %s ----", p.Name, p.cmd, out, p.Name)
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL to the process group, as a crash would, and waits
// for the process to end.
func (p *Process) Kill() {
	p.killGroup(syscall.SIGKILL)
	<-p.done
}

// Command returns a new, unstarted command like the one p runs (same
// program, arguments, environment and directory), to start it again.
func (p *Process) Command() *exec.Cmd {
	cmd := exec.Command(p.cmd.Path, p.cmd.Args[1:]...)
	cmd.Env, cmd.Dir, cmd.WaitDelay = p.cmd.Env, p.cmd.Dir, p.cmd.WaitDelay
	return cmd
}

// Stop sends SIGTERM to the process group, waits up to timeout, then kills
// the group. It is safe to call more than once.
func (p *Process) Stop(timeout time.Duration) {
	if ok, _ := p.Exited(); ok {
		p.killGroup(syscall.SIGKILL) // leftovers of the group, if any
		return
	}
	p.killGroup(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.killGroup(syscall.SIGKILL)
		<-p.done
	}
	p.killGroup(syscall.SIGKILL)
}

func (p *Process) killGroup(sig syscall.Signal) {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// WaitFor polls check every 50 ms until it returns nil, the process exits,
// or timeout passes.
func WaitFor(ctx context.Context, p *Process, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p != nil {
			if ok, err := p.Exited(); ok {
				return fmt.Errorf("%s exited (%v) while waiting for %s", p.Name, err, what)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v waiting for %s: %w", timeout, what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DialCheck returns a check that succeeds once addr accepts TCP connections.
func DialCheck(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// HTTPCheck returns a check that succeeds once url answers with status want.
func HTTPCheck(url string, header http.Header, want int) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			return errors.New(resp.Status + ": " + strings.TrimSpace(body.String()))
		}
		return nil
	}
}
