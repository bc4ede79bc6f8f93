package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// dialledHere reports whether the loopback TCP connection c, accepted by
// the relay, was dialled by this process: the socket at c's remote end must
// be one of this process's file descriptors. Any other local process could
// connect to the relay's port before the library does. It reads
// /proc/self/net/tcp, which stays visible under systemd's ProcSubset=pid.
// An error means it cannot tell (/proc is not readable); a dialling socket
// that is not in the table any more (closed, or its process gone) is not
// this process's.
func dialledHere(c net.Conn) (bool, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil || local.IP.To4() == nil {
		return false, fmt.Errorf("not an IPv4 TCP connection: %v", c.RemoteAddr())
	}
	inode, err := socketInode("/proc/self/net/tcp", procAddr(remote), procAddr(local))
	if err != nil || inode == "" {
		return false, err
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false, err
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && target == want {
			return true, nil
		}
	}
	return false, nil
}

// procAddr writes an IPv4 address as /proc/net/tcp does: the address as a
// little-endian 32-bit hex number, then the port in hex.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// socketInode returns the inode of the socket with the given local and
// remote addresses in a /proc/net/tcp table; "" when the table has no such
// socket or it has no inode (closed: its owner is gone).
func socketInode(table, local, remote string) (string, error) {
	b, err := os.ReadFile(table)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
		if len(f) >= 10 && f[1] == local && f[2] == remote {
			if _, err := strconv.ParseUint(f[9], 10, 64); err != nil || f[9] == "0" {
				return "", nil
			}
			return f[9], nil
		}
	}
	return "", sc.Err()
}
