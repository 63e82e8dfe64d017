package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/local/hostproc"
)

// Process is one supervised daemon.
type Process struct {
	Name string   `json:"name"`
	Path string   `json:"path"`
	Args []string `json:"args"`
	// Env are NAME=value settings added to the supervisor's own
	// environment; a name already there takes the value given here.
	Env []string `json:"env,omitempty"`
	// ReadySocket, when set, is a unix socket that accepts connections once
	// the process is ready; the next process waits for it.
	ReadySocket string `json:"readySocket,omitempty"`
	// MaxBackoffSeconds caps the wait between restarts (30 when zero), for
	// a process expected to exit until something else prepares its files.
	MaxBackoffSeconds int `json:"maxBackoffSeconds,omitempty"`
}

// Spec is the ordered list of processes to keep running.
type Spec struct {
	Processes []Process `json:"processes"`
}

// Files are where a supervisor keeps its spec, pid files and logs.
type Files struct {
	RunDir string
	LogDir string
}

// SpecPath is the spec the supervisor reads.
func (f Files) SpecPath() string { return filepath.Join(f.RunDir, "supervisor.json") }

// PIDPath is the pid file of the supervisor ("supervisor") or of a process.
func (f Files) PIDPath(name string) string { return filepath.Join(f.RunDir, name+".pid") }

// LogPath is a process's log file.
func (f Files) LogPath(name string) string { return filepath.Join(f.LogDir, name+".log") }

// WriteSpec saves spec where the supervisor reads it.
func (f Files) WriteSpec(spec Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.RunDir, 0o755); err != nil {
		return err
	}
	tmp := f.SpecPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, f.SpecPath())
}

// ReadSpec loads the spec.
func (f Files) ReadSpec() (Spec, error) {
	var spec Spec
	data, err := os.ReadFile(f.SpecPath())
	if err != nil {
		return spec, err
	}
	return spec, json.Unmarshal(data, &spec)
}

// PID returns the live process recorded in name's pid file, or 0.
func (f Files) PID(name string) int {
	data, err := os.ReadFile(f.PIDPath(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !hostproc.Alive(pid) {
		return 0
	}
	return pid
}

// Run supervises the spec in files until ctx ends or SIGTERM/SIGINT arrives.
func Run(ctx context.Context, files Files, logf func(format string, args ...any)) error {
	if err := os.MkdirAll(files.LogDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(files.PIDPath("supervisor")+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("another supervisor is running (pid %d)", files.PID("supervisor"))
	}
	if err := os.WriteFile(files.PIDPath("supervisor"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(files.PIDPath("supervisor"))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	s := &state{files: files, logf: logf, running: map[string]*child{}}
	s.reload(ctx)
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				logf("reloading %s", files.SpecPath())
				s.reload(ctx)
				continue
			}
			logf("stopping on %s", sig)
			s.stopAll()
			return nil
		}
	}
}

type state struct {
	files   Files
	logf    func(string, ...any)
	mu      sync.Mutex
	running map[string]*child
	order   []string
}

// child is one supervised process and the loop that restarts it.
type child struct {
	proc Process
	stop chan struct{}
	done chan struct{}
}

func (s *state) reload(ctx context.Context) {
	spec, err := s.files.ReadSpec()
	if err != nil {
		s.logf("cannot read spec: %v", err)
		return
	}
	want := map[string]Process{}
	for _, p := range spec.Processes {
		want[p.Name] = p
	}
	// Stop, in reverse order, what was removed or changed.
	for i := len(s.order) - 1; i >= 0; i-- {
		name := s.order[i]
		c := s.running[name]
		if p, ok := want[name]; ok && equalProcess(p, c.proc) {
			continue
		}
		s.stopChild(c)
		delete(s.running, name)
	}
	s.order = nil
	for _, p := range spec.Processes {
		s.order = append(s.order, p.Name)
		if _, ok := s.running[p.Name]; ok {
			continue
		}
		c := &child{proc: p, stop: make(chan struct{}), done: make(chan struct{})}
		s.running[p.Name] = c
		ready := make(chan struct{})
		go s.loop(ctx, c, ready)
		select {
		case <-ready:
		case <-time.After(90 * time.Second):
			s.logf("%s is not ready after 90s; starting the rest anyway", p.Name)
		}
	}
}

func equalProcess(a, b Process) bool {
	return a.Name == b.Name && a.Path == b.Path && slices.Equal(a.Args, b.Args) && slices.Equal(a.Env, b.Env) && a.ReadySocket == b.ReadySocket && a.MaxBackoffSeconds == b.MaxBackoffSeconds
}

// loop runs c until told to stop, restarting it with a backoff that resets
// once it has stayed up for a minute.
func (s *state) loop(ctx context.Context, c *child, ready chan struct{}) {
	defer close(c.done)
	backoff := time.Second
	signalled := false
	for {
		s.killStale(c.proc.Name)
		cmd, err := s.start(c.proc)
		started := time.Now()
		if err != nil {
			s.logf("start %s: %v", c.proc.Name, err)
		} else {
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if !signalled {
				go func() {
					waitReady(c.proc, exited)
					close(ready)
				}()
				signalled = true
			}
			select {
			case err := <-exited:
				s.logf("%s exited: %v", c.proc.Name, err)
			case <-c.stop:
				terminate(cmd.Process.Pid, exited)
				os.Remove(s.files.PIDPath(c.proc.Name))
				return
			}
			if time.Since(started) > time.Minute {
				backoff = time.Second
			}
		}
		select {
		case <-c.stop:
			os.Remove(s.files.PIDPath(c.proc.Name))
			return
		case <-time.After(backoff):
		}
		maxBackoff := 30 * time.Second
		if c.proc.MaxBackoffSeconds > 0 {
			maxBackoff = time.Duration(c.proc.MaxBackoffSeconds) * time.Second
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (s *state) start(p Process) (*exec.Cmd, error) {
	logFile, err := os.OpenFile(s.files.LogPath(p.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The mark is inherited by what the daemon starts in turn, so that
	// teardown finds containerd's shims, which outlive containerd.
	// exec.Cmd keeps the last of duplicate names, so p.Env overrides.
	cmd.Env = append(append(os.Environ(), p.Env...), hostproc.OwnerEnv+"="+s.files.RunDir)
	// The child dies with the supervisor, so a killed supervisor never
	// leaves a daemon that a new one would fight over its socket.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.logf("started %s (pid %d)", p.Name, cmd.Process.Pid)
	return cmd, os.WriteFile(s.files.PIDPath(p.Name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// killStale stops a process left by an earlier supervisor that died
// without stopping it.
func (s *state) killStale(name string) {
	if pid := s.files.PID(name); pid != 0 {
		s.logf("stopping stale %s (pid %d)", name, pid)
		terminate(pid, nil)
	}
}

func (s *state) stopChild(c *child) {
	close(c.stop)
	<-c.done
	s.logf("stopped %s", c.proc.Name)
}

func (s *state) stopAll() {
	for i := len(s.order) - 1; i >= 0; i-- {
		if c, ok := s.running[s.order[i]]; ok {
			s.stopChild(c)
		}
	}
}

// waitReady returns once p's ready socket accepts a connection (or at
// once when it has none), when the process exits, or after 90 seconds.
func waitReady(p Process, exited chan error) {
	if p.ReadySocket == "" {
		return
	}
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		if conn, err := net.Dial("unix", p.ReadySocket); err == nil {
			conn.Close()
			return true, nil
		}
		return len(exited) > 0, nil
	})
}

// terminate sends SIGTERM, then SIGKILL after 20 seconds. exited, when
// not nil, reports the process's exit; otherwise /proc is polled.
func terminate(pid int, exited chan error) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if exited == nil {
		if hostproc.WaitExit(context.Background(), pid, 20*time.Second) != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
}

// Start runs cmd, a `kubinception admin supervise` command for files,
// detached in a session of its own so that it outlives the caller, with
// its output appended to the supervisor's log; it returns once the
// supervisor has taken its pid file. cmd may wrap the supervisor, e.g. in
// nsenter, as long as the supervisor replaces or outlives the wrapper.
func Start(ctx context.Context, files Files, cmd *exec.Cmd) error {
	if err := os.MkdirAll(files.LogDir, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(files.LogPath("supervisor"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(os.Environ(), hostproc.OwnerEnv+"="+files.RunDir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		if files.PID("supervisor") != 0 {
			return true, nil
		}
		if !hostproc.Alive(pid) {
			return false, errors.New("it exited")
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("supervisor did not start: %w\n%s", err, Tail(files.LogPath("supervisor"), 20))
	}
	return nil
}

// Tail is the last n lines of a log file, or what went wrong reading it.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Stop asks the supervisor to stop everything and waits for it to exit,
// killing it after timeout.
func Stop(ctx context.Context, files Files, timeout time.Duration) error {
	pid := files.PID("supervisor")
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if err := hostproc.WaitExit(ctx, pid, timeout); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return fmt.Errorf("supervisor (pid %d) did not stop within %s; killed it", pid, timeout)
	}
	return nil
}

// Reload asks a running supervisor to re-read its spec.
func Reload(files Files) error {
	pid := files.PID("supervisor")
	if pid == 0 {
		return errors.New("supervisor is not running")
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}
