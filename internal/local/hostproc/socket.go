package hostproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ListenerPID finds the process listening on a TCP port (IPv4 or IPv6),
// or returns 0.
func ListenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, inode := range listeningInodes(string(data), port) {
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

// listeningInodes parses a /proc/net/tcp table and returns the socket
// inodes in LISTEN state on port.
func listeningInodes(table string, port int) []string {
	var out []string
	lines := strings.Split(table, "\n")
	for _, line := range lines[min(1, len(lines)):] {
		fs := strings.Fields(line)
		if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
			continue
		}
		local := fs[1]
		if i := strings.LastIndexByte(local, ':'); i >= 0 {
			if p, err := strconv.ParseUint(local[i+1:], 16, 16); err == nil && int(p) == port {
				out = append(out, fs[9])
			}
		}
	}
	return out
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
