package supervisor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/local/hostproc"
)

// waitUntil polls cond for up to a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestSupervisorRestartsReloadsAndStops(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command on this machine")
	}
	dir := t.TempDir()
	files := Files{RunDir: dir, LogDir: dir}
	if err := files.WriteSpec(Spec{Processes: []Process{
		{Name: "first", Path: sleep, Args: []string{"1000"}},
		{Name: "second", Path: sleep, Args: []string{"1001"}},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, files, t.Logf) }()

	waitUntil(t, "both processes", func() bool { return files.PID("first") != 0 && files.PID("second") != 0 })
	first := files.PID("first")

	// Both carry the mark by which teardown finds what they start.
	owned := hostproc.PIDs(hostproc.Find(func(p hostproc.Process) bool { return p.OwnedBy(dir) }))
	if !slices.Contains(owned, first) || !slices.Contains(owned, files.PID("second")) || len(owned) != 2 {
		t.Fatalf("processes owned by %s: %v, want first (%d) and second (%d)", dir, owned, first, files.PID("second"))
	}

	// A process that dies is started again.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "first to restart", func() bool { p := files.PID("first"); return p != 0 && p != first })

	// A second supervisor refuses to run beside the first.
	if err := Run(context.Background(), files, t.Logf); err == nil {
		t.Fatal("a second supervisor started on the same files")
	}

	// Reloading without "second" stops it and leaves "first" alone.
	restarted := files.PID("first")
	second := files.PID("second")
	if err := files.WriteSpec(Spec{Processes: []Process{{Name: "first", Path: sleep, Args: []string{"1000"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := Reload(files); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "second to stop", func() bool { return !hostproc.Alive(second) })
	if files.PID("first") != restarted {
		t.Fatal("reload restarted a process whose spec did not change")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("supervisor did not stop")
	}
	if hostproc.Alive(restarted) {
		t.Fatal("supervisor stopped but left its process running")
	}
}

// TestSupervisorEnv checks that a process runs with its own settings over
// the supervisor's environment, and that changing them restarts it.
func TestSupervisorEnv(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "env.out")
	t.Setenv("KUBI_TEST_SETTING", "from-supervisor")
	files := Files{RunDir: dir, LogDir: dir}
	spec := func(value string) Spec {
		return Spec{Processes: []Process{{Name: "env", Path: sh,
			Args: []string{"-c", `echo "$KUBI_TEST_SETTING $KUBI_TEST_OTHER" > ` + out + `.tmp && mv ` + out + `.tmp ` + out + ` && exec sleep 1000`},
			Env:  []string{"KUBI_TEST_SETTING=" + value}}}}
	}
	if err := files.WriteSpec(spec("first")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBI_TEST_OTHER", "kept")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, files, t.Logf) }()
	defer func() {
		cancel()
		<-done
	}()
	read := func() string { data, _ := os.ReadFile(out); return strings.TrimSpace(string(data)) }
	waitUntil(t, "the process to write its environment", func() bool { return read() == "first kept" })
	first := files.PID("env")

	if err := files.WriteSpec(spec("second")); err != nil {
		t.Fatal(err)
	}
	if err := Reload(files); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the process to restart with its new environment", func() bool { return read() == "second kept" })
	if files.PID("env") == first {
		t.Fatal("the process kept its pid although its environment changed")
	}
}
