package hostproc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// OwnerEnv is the environment variable by which a process names the state
// directory it belongs to. Our supervisors set it on the daemons they start;
// the daemons' own children inherit it, notably containerd's shims, which
// outlive containerd and name neither our directories nor our sockets on
// their command line when containerd runs in a worker's mount namespace.
const OwnerEnv = "KUBINCEPTION_OWNER"

// Process is a live process as /proc shows it.
type Process struct {
	PID int
	// Exe is the executable's path as the kernel resolves it for this
	// process (without the " (deleted)" mark of a replaced binary); empty
	// when it cannot be read.
	Exe string
	// Args is the command line.
	Args []string
	// Env is the environment the process started with.
	Env []string
	// MountNS identifies the process's mount namespace ("mnt:[INODE]");
	// empty when it cannot be read.
	MountNS string
}

// Name is the executable's base name, or argv[0]'s when the executable
// cannot be read.
func (p Process) Name() string {
	if p.Exe != "" {
		return filepath.Base(p.Exe)
	}
	if len(p.Args) > 0 {
		return filepath.Base(p.Args[0])
	}
	return ""
}

// Command is argv[0]'s base name: what a multi-call binary runs as.
func (p Process) Command() string {
	if len(p.Args) == 0 {
		return ""
	}
	return filepath.Base(p.Args[0])
}

// Cmdline is the command line joined with spaces.
func (p Process) Cmdline() string { return strings.Join(p.Args, " ") }

// String describes the process for a report.
func (p Process) String() string { return fmt.Sprintf("pid %d: %s", p.PID, p.Cmdline()) }

// Getenv returns a variable of the environment the process started with.
func (p Process) Getenv(key string) (string, bool) {
	for _, kv := range p.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// OwnedBy reports whether the process's OwnerEnv names dir or a directory
// below it.
func (p Process) OwnedBy(dir string) bool {
	owner, ok := p.Getenv(OwnerEnv)
	return ok && Within(owner, dir)
}

// RunsFrom reports whether the process's executable lies below dir.
func (p Process) RunsFrom(dir string) bool { return p.Exe != "" && Within(p.Exe, dir) }

// NamesPath reports whether an argument names dir or a path below it,
// alone or as a flag's value ("--root=DIR"): /var/lib/k names neither
// /var/lib/k-e2e nor /var/lib/k2.
func (p Process) NamesPath(dir string) bool {
	dir = filepath.Clean(dir)
	for _, a := range p.Args {
		if strings.HasSuffix(a, dir) || strings.Contains(a, dir+"/") {
			return true
		}
	}
	return false
}

// Within reports whether path is dir or lies below it.
func Within(path, dir string) bool {
	dir = filepath.Clean(dir)
	path = filepath.Clean(path)
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// Self is this process, for comparing namespaces.
func Self() Process { return Read(os.Getpid()) }

// Read returns what /proc says of pid; Args is empty for a process that
// is gone, a zombie or a kernel thread.
func Read(pid int) Process {
	p := Process{PID: pid}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cmdline) > 0 {
		p.Args = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && len(env) > 0 {
		p.Env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	p.MountNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return p
}

// Find lists the live processes, other than this one and kernel threads,
// for which match is true.
func Find(match func(Process) bool) []Process {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		p := Read(pid)
		// Kernel threads and zombies have no command line.
		if len(p.Args) == 0 {
			continue
		}
		if match(p) {
			out = append(out, p)
		}
	}
	return out
}

// PIDs are the processes' ids.
func PIDs(ps []Process) []int {
	pids := make([]int, len(ps))
	for i, p := range ps {
		pids[i] = p.PID
	}
	return pids
}

// Alive reports whether pid is a running process (not a zombie).
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// KillMatching kills (SIGKILL) every process match selects, and repeats
// while new ones appear (a dying daemon's children, a restarting loop),
// until none is left or timeout passes.
func KillMatching(ctx context.Context, timeout time.Duration, match func(Process) bool) error {
	var left []Process
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		left = Find(match)
		for _, p := range left {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("processes %v still run after %s: %w", PIDs(left), timeout, err)
	}
	return nil
}

// WaitExit waits until pid has exited or timeout passes.
func WaitExit(ctx context.Context, pid int, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return !Alive(pid), nil
	})
}

// RSS is the process's resident memory in bytes, 0 when it is gone.
func RSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// InCgroup reports whether pid runs in a cgroup whose path contains part
// (in any controller).
func InCgroup(pid int, part string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && strings.Contains(string(data), part)
}
