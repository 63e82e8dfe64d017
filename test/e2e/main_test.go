// Package e2e tests kubinception end to end on a real local admin cluster:
// real containerd, kubelet, etcd and kube-apiserver built from upstream,
// driven through the kubinception binary and the upstream kubectl.
//
// The tests need root and take minutes, so they run only when
// KUBINCEPTION_E2E=1 (hack/test sets it); otherwise they skip and say so.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/release"
)

var (
	// root is the admin cluster's state directory for the tests.
	root = envOr("KUBINCEPTION_E2E_ROOT", "/var/lib/kubinception-e2e")
	// bin is the kubinception binary under test, built by TestMain.
	bin string
	// kubectl is the upstream kubectl from the component cache.
	kubectl string
)

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func TestMain(m *testing.M) {
	if os.Getenv("KUBINCEPTION_E2E") != "1" {
		fmt.Println("skipping end-to-end tests: they need root and a few minutes; run them with KUBINCEPTION_E2E=1 (hack/test does)")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		fmt.Println("end-to-end tests need root: they start containerd, the kubelet and change iptables")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "kubinception-e2e-")
	if err != nil {
		panic(err)
	}
	// Readable by all: one test runs the binary as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "kubinception")
	build := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "kubinception.dev/kubinception/cmd/kubinception")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Printf("build kubinception: %v\n%s", err, out)
		os.Exit(1)
	}
	// Components are built (or found in the cache) once, before any test
	// measures anything.
	out, err := exec.Command(bin, "build", "components").CombinedOutput()
	if err != nil {
		fmt.Printf("build components: %v\n%s", err, out)
		os.Exit(1)
	}
	b := &components.Builder{CacheDir: components.DefaultCacheDir()}
	bins, err := b.Lookup(release.DefaultKubernetesVersion)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	kubectl = bins.Component("kubectl")
	// The tests use the machine's ports and interfaces: an admin cluster
	// running from another state directory would collide with them. One
	// whose processes are gone (a stopped session) is only cleared up.
	if other := admincluster.DefaultRoot; other != root {
		if _, err := os.Stat(other); err == nil {
			if data, err := os.ReadFile(filepath.Join(other, "run", "supervisor.pid")); err == nil && pidAlive(string(data)) {
				fmt.Printf("an admin cluster is running from %s: stop it (kubinception admin down) before running the end-to-end tests\n", other)
				os.Exit(1)
			}
			if out, err := exec.Command(bin, "admin", "down", "--root", other).CombinedOutput(); err != nil {
				fmt.Printf("clearing what the stopped admin cluster in %s left: %v\n%s", other, err, out)
				os.Exit(1)
			}
		}
	}
	// Start from nothing: clear what an interrupted earlier run left.
	if out, err := exec.Command(bin, "admin", "down", "--purge", "--root", root).CombinedOutput(); err != nil {
		fmt.Printf("clearing an earlier test cluster: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if out, err := exec.Command(bin, "admin", "down", "--purge", "--root", root).CombinedOutput(); err != nil {
		fmt.Printf("final teardown: %v\n%s", err, out)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// pidAlive reports whether a pid-file's process runs.
func pidAlive(pidText string) bool {
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(pidText), &pid); err != nil || pid <= 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs the kubinception binary with args against the test root.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(exec.Command(bin, withRoot(args)...))
}

func withRoot(args []string) []string {
	if len(args) > 0 && args[0] == "admin" {
		return append(append([]string{args[0]}, args[1:]...), "--root", root)
	}
	return args
}

func runCmd(cmd *exec.Cmd) result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// kube runs the upstream kubectl against the admin cluster.
func kube(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", filepath.Join(root, "admin.conf")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustKube runs kubectl and fails the test, with the cluster's state, if
// kubectl fails.
func mustKube(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kube(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, clusterState(t))
	}
	return out
}

// clusterState is what a person needs when a test fails: status, pods,
// events.
func clusterState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	st := run(t, "admin", "status")
	fmt.Fprintf(&b, "=== kubinception admin status\n%s%s\n", st.stdout, st.stderr)
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, _ := kube(t, args...)
		fmt.Fprintf(&b, "=== kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	return b.String()
}

// eventually polls cond until it returns nil or the deadline passes, then
// fails with the last error and the cluster's state.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = cond(); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s: %v\n%s", timeout, what, last, clusterState(t))
		case <-time.After(time.Second):
		}
	}
}

// config is the test cluster's recorded configuration.
func config(t *testing.T) admincluster.Config {
	t.Helper()
	c, ok, err := admincluster.LoadSaved(root)
	if err != nil || !ok {
		t.Fatalf("no saved configuration under %s (ok=%v): %v", root, ok, err)
	}
	return c
}
