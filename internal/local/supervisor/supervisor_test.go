package supervisor

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// waitUntil polls cond for up to a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
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
	waitUntil(t, "second to stop", func() bool { return !Alive(second) })
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
	if Alive(restarted) {
		t.Fatal("supervisor stopped but left its process running")
	}
}
