package relay

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

func TestDialledHere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if own, err := dialledHere(in); !own || err != nil {
		t.Errorf("own connection: dialledHere = %v, %v", own, err)
	}
}

// TestRelayRefusesOtherProcesses: a connection another process makes to
// the relay's port before the library is closed, and the library's
// connection is then relayed to the server.
func TestRelayRefusesOtherProcesses(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash (for its /dev/tcp) is needed:", err)
	}
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	received := make(chan string, 1)
	go func() {
		c, err := server.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 4)
		_, _ = io.ReadFull(c, b)
		received <- string(b)
	}()
	relay, err := Start(server.Addr().String(), 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { relay.Close(); relay.Wait() }()

	_, port, _ := net.SplitHostPort(relay.Addr())
	other := exec.Command("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port+" && echo connected && cat <&3 >/dev/null; echo closed")
	stdout, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "connected" {
		t.Fatalf("the other process did not connect: %q", lines.Text())
	}
	closed := make(chan bool, 1)
	go func() { closed <- lines.Scan() && lines.Text() == "closed" }()
	select {
	case ok := <-closed:
		if !ok {
			t.Fatal("the other process's connection ended oddly")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay kept the other process's connection open")
	}

	lib, err := net.Dial("tcp", relay.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if _, err := io.WriteString(lib, "<a/>"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-received:
		if got != "<a/>" {
			t.Errorf("server received %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the library's connection was not relayed (port " + strconv.Quote(port) + ")")
	}
}

// A connection whose dialling socket is already gone (its process exited
// before the relay looked) is not taken: the check fails closed.
func TestDialledHereFailsClosedWhenThePeerIsGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if out, err := exec.Command("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port).CombinedOutput(); err != nil {
		t.Fatalf("the other process did not connect: %v %s", err, out)
	}
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if own, err := dialledHere(in); own || err != nil {
		t.Fatalf("dialledHere of a gone process's connection = %v, %v; want false, nil", own, err)
	}
}
