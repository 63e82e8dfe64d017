package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// envtest starts kube-apiserver and etcd in process groups of their own,
// so they outlive a test binary that is killed (a test timeout, Ctrl-C)
// and keep their ports, memory and CPU on a shared machine. Under Main
// they are started through the test binary itself: a symlink named after
// the component points at it, and Main, started under that name, asks the
// kernel to kill it when its parent dies (PR_SET_PDEATHSIG) and then
// becomes the real component (execve keeps that request).

// reaperFile, beside the links, holds the parent's pid and the real
// binaries, one "name=path" a line.
const reaperFile = "reaper"

// reapedComponents are the names envtest starts.
var reapedComponents = []string{"kube-apiserver", "etcd"}

// execComponent becomes the component this process was started as, when
// it was started through a reaper link; otherwise it returns.
func execComponent() {
	name := filepath.Base(os.Args[0])
	if !slices.Contains(reapedComponents, name) {
		return
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(os.Args[0]), reaperFile))
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	target := ""
	for _, l := range lines[1:] {
		if n, path, ok := strings.Cut(l, "="); ok && n == name {
			target = path
		}
	}
	if target == "" {
		fmt.Fprintf(os.Stderr, "testenv: %s names no binary for %s\n", reaperFile, name)
		os.Exit(2)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: PR_SET_PDEATHSIG: %v\n", err)
		os.Exit(2)
	}
	// The parent may have died before the request was made.
	if strconv.Itoa(os.Getppid()) != lines[0] {
		os.Exit(2)
	}
	err = syscall.Exec(target, append([]string{target}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "testenv: exec %s: %v\n", target, err)
	os.Exit(2)
}

// reaperBinaries returns paths in dir that start bins' kube-apiserver and
// etcd through the test binary.
func reaperBinaries(bins Binaries, dir string) (Binaries, error) {
	self, err := os.Executable()
	if err != nil {
		return Binaries{}, err
	}
	content := fmt.Sprintf("%d\nkube-apiserver=%s\netcd=%s\n", os.Getpid(), bins.KubeAPIServer, bins.Etcd)
	if err := os.WriteFile(filepath.Join(dir, reaperFile), []byte(content), 0o600); err != nil {
		return Binaries{}, err
	}
	for _, name := range reapedComponents {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			return Binaries{}, err
		}
	}
	return Binaries{KubeAPIServer: filepath.Join(dir, "kube-apiserver"), Etcd: filepath.Join(dir, "etcd")}, nil
}

// DieWithTest makes a process the test starts die with the test binary,
// even when the binary is killed, instead of holding its ports and memory.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// Process is a command a test started with StartProcess.
type Process struct {
	Cmd *exec.Cmd
	// Exited is closed when the process has exited.
	Exited <-chan struct{}
	// LogPath holds its standard output and error.
	LogPath string
}

// WaitAnswering asks answers every interval until it returns nil, and
// gives up after timeout or at once when the process exits, returning
// why with the last answer's error.
func (p *Process) WaitAnswering(interval, timeout time.Duration, answers func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.Exited:
			return false, fmt.Errorf("%s exited: %v", filepath.Base(p.Cmd.Path), p.Cmd.ProcessState)
		default:
		}
		last = answers(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last answer: %v)", err, last)
	}
	return nil
}

// StartProcess starts cmd with its output in logPath, dying with the test
// binary (DieWithTest). When the test ends it is sent SIGTERM, killed if
// it has not exited 20 seconds later, and, if the test failed, the end of
// its log is printed under name.
func StartProcess(tb testing.TB, cmd *exec.Cmd, name, logPath string) *Process {
	tb.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if tb.Failed() {
			tb.Logf("%s log (end):\n%s", name, fileTail(logPath, 16<<10))
		}
	})
	return &Process{Cmd: cmd, Exited: exited, LogPath: logPath}
}
