package hostproc

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// ListenerPID finds the process listening on TCP port at ip, or on any
// address (a wildcard listener takes every address), and returns 0 when
// there is none.
func ListenerPID(ip net.IP, port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, inode := range listeningInodes(string(data), ip, port) {
			inodes[inode] = true
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	owners := Find(func(p Process) bool { return holdsSocket(p.PID, inodes) })
	if len(owners) == 0 {
		return 0
	}
	return owners[0].PID
}

// listeningInodes parses a /proc/net/tcp or tcp6 table and returns the
// inodes of the sockets in LISTEN state on port at ip or at a wildcard
// address.
func listeningInodes(table string, ip net.IP, port int) []string {
	var out []string
	lines := strings.Split(table, "\n")
	for _, line := range lines[min(1, len(lines)):] {
		fs := strings.Fields(line)
		if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
			continue
		}
		addr, portHex, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		local, err := parseProcIP(addr)
		if err != nil {
			continue
		}
		if local.IsUnspecified() || local.Equal(ip) {
			out = append(out, fs[9])
		}
	}
	return out
}

// parseProcIP decodes an address of /proc/net/tcp{,6}: the address's
// 32-bit words, each in the machine's (little-endian) byte order.
func parseProcIP(s string) (net.IP, error) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b), nil
}

// holdsSocket reports whether one of pid's file descriptors is a socket
// with one of the inodes.
func holdsSocket(pid int, inodes map[string]bool) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") && inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			return true
		}
	}
	return false
}
