// Package e2e tests kubinception end to end on a real local admin cluster:
// real containerd, kubelet, etcd and kube-apiserver built from upstream,
// driven through the kubinception binary and the upstream kubectl. It keeps
// only what needs that cluster; what a real API server alone can show is
// tested with envtest beside the code.
//
// The tests need root and take minutes, so they run only when
// KUBINCEPTION_E2E=1 (hack/test sets it); otherwise each one skips and
// says why.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/release"
)

var (
	// root is the admin cluster's state directory for the tests.
	root = envOr("KUBINCEPTION_E2E_ROOT", "/var/lib/kubinception-e2e")
	// bin is the kubinception binary under test, built by TestMain.
	bin string
	// kubectl is the upstream kubectl from the component cache.
	kubectl string
	// skipReason, when set, is why the tests do not run.
	skipReason string
	// shimsBefore are the container shims that ran before the suite: any
	// other one left after a teardown is ours.
	shimsBefore []int
)

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// TestMain runs the suites in file-name order on one shared admin cluster.
// TestAdminCluster (admin_test.go: starts from a stopped cluster, needs its
// ports free) and TestHelmChart (chart_test.go: installs the operator with
// Helm, so nothing may have installed it yet) must come first: a new suite
// goes in a file whose name sorts after chart_test.go.
func TestMain(m *testing.M) {
	if os.Getenv("KUBINCEPTION_E2E") != "1" {
		skipReason = "end-to-end tests need root, this machine's network and tens of minutes: run them with KUBINCEPTION_E2E=1 (hack/test does)"
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		fmt.Println("end-to-end tests need root: they start containerd, the kubelet and change iptables")
		os.Exit(1)
	}
	os.Exit(setUpAndRun(m))
}

// requireE2E skips the test, saying why, when the end-to-end tests are
// off. Every test of the package calls it first.
func requireE2E(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// setUpAndRun builds the binary and the components, clears what an
// earlier run left, runs the tests and tears the cluster down.
func setUpAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kubinception-e2e-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by all: one test runs the binary as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Println(err)
		return 1
	}
	bin = filepath.Join(dir, "kubinception")
	build := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "kubinception.dev/kubinception/cmd/kubinception")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Printf("build kubinception: %v\n%s", err, out)
		return 1
	}
	// Components are built (or found in the cache) once, before any test
	// measures anything.
	if out, err := exec.Command(bin, "build", "components").CombinedOutput(); err != nil {
		fmt.Printf("build components: %v\n%s", err, out)
		return 1
	}
	bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(release.DefaultKubernetesVersion)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	kubectl = bins.Component("kubectl")
	// The tests use the machine's ports and interfaces: an admin cluster
	// running from another state directory would collide with them. One
	// whose processes are gone (a stopped session) is only cleared up.
	if other := admincluster.DefaultRoot; other != root {
		if _, err := os.Stat(other); err == nil {
			if pid := pidFile(filepath.Join(other, "run", "supervisor.pid")); pid != 0 && hostproc.Alive(pid) {
				fmt.Printf("an admin cluster is running from %s: stop it (kubinception admin down) before running the end-to-end tests\n", other)
				return 1
			}
			if out, err := exec.Command(bin, "admin", "down", "--root", other).CombinedOutput(); err != nil {
				fmt.Printf("clearing what the stopped admin cluster in %s left: %v\n%s", other, err, out)
				return 1
			}
		}
	}
	// Start from nothing: clear what an interrupted earlier run left. A
	// pod of a killed cluster may not be removable while its network
	// plugin still reaches for that cluster's API server; the rest of
	// down clears its state all the same, and down run again (as it asks)
	// finds nothing left undone.
	if out, err := exec.Command(bin, "admin", "down", "--purge", "--root", root).CombinedOutput(); err != nil {
		fmt.Printf("clearing an earlier test cluster: %v\n%s\nclearing again\n", err, out)
		if out, err := exec.Command(bin, "admin", "down", "--purge", "--root", root).CombinedOutput(); err != nil {
			fmt.Printf("clearing an earlier test cluster again: %v\n%s", err, out)
			return 1
		}
	}
	shimsBefore = hostproc.PIDs(shims())
	code := m.Run()
	if out, err := exec.Command(bin, "admin", "down", "--purge", "--root", root).CombinedOutput(); err != nil {
		fmt.Printf("final teardown: %v\n%s", err, out)
		code = 1
	}
	return code
}

// upAndInstall brings the admin cluster up (a no-op when it is up) and
// installs the operator.
func upAndInstall(t *testing.T) {
	t.Helper()
	if r := run(t, "admin", "up"); r.err != nil {
		t.Fatalf("admin up:\n%s", r)
	}
	if r := run(t, "install", "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("install:\n%s", r)
	}
}

// pidFile reads a pid file; 0 when it is missing or holds no pid.
func pidFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs the kubinception binary with args against the test root. It
// may be called from any goroutine.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(exec.CommandContext(t.Context(), bin, withRoot(args)...))
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

// adminKubeconfig is the admin cluster's kubeconfig.
func adminKubeconfig() string { return filepath.Join(root, "admin.conf") }

// kubectlIn runs the upstream kubectl against the cluster of kubeconfig,
// with stdin when it is not empty, and returns its combined output.
func kubectlIn(ctx context.Context, kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// kubectlTimeout bounds one kubectl command of a test, so that a cluster
// that stops answering fails the test instead of hanging it.
const kubectlTimeout = 5 * time.Minute

// kube runs kubectl against the admin cluster.
func kube(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	return kubectlIn(ctx, adminKubeconfig(), "", args...)
}

// mustKube runs kubectl against the admin cluster and fails the test,
// with the cluster's state, if kubectl fails.
func mustKube(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kube(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, clusterState(t))
	}
	return out
}

// tkube runs kubectl against a tenant.
func tkube(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	return kubectlIn(ctx, kubeconfig, "", args...)
}

// mustTkube runs kubectl against a tenant and fails the test, with the
// tenant's state, if kubectl fails.
func mustTkube(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := tkube(t, kubeconfig, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, tenantState(t, kubeconfig))
	}
	return out
}

// mustApply applies a manifest with kubectl to the cluster of kubeconfig.
func mustApply(t *testing.T, kubeconfig, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	if _, err := kubectlIn(ctx, kubeconfig, manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
}

// cleanupKubectl runs kubectl from a t.Cleanup function (where the test's
// context has ended) and reports a failure as a test error.
func cleanupKubectl(t *testing.T, kubeconfig string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	if _, err := kubectlIn(ctx, kubeconfig, "", args...); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// names runs `kubectl get ... -o name` and returns the names it lists; it
// fails the test if kubectl fails or lists nothing, so that a check over
// the names cannot pass by looking at none.
func names(t *testing.T, kubeconfig string, args ...string) []string {
	t.Helper()
	out := mustTkube(t, kubeconfig, append(args, "-o", "name")...)
	list := strings.Fields(out)
	if len(list) == 0 {
		t.Fatalf("kubectl get %s listed nothing\n%s", strings.Join(args, " "), tenantState(t, kubeconfig))
	}
	return list
}

// clusterState is what a person needs when a test fails: status, pods,
// events of the admin cluster. Errors are part of the report.
func clusterState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	st := run(t, "admin", "status")
	fmt.Fprintf(&b, "=== kubinception admin status\n%s%s\n", st.stdout, st.stderr)
	b.WriteString(state(adminKubeconfig()))
	return b.String()
}

// tenantState describes a tenant for a failure message.
func tenantState(t *testing.T, kubeconfig string) string {
	t.Helper()
	return state(kubeconfig)
}

func state(kubeconfig string) string {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, err := kubectlIn(ctx, kubeconfig, "", args...)
		if err != nil {
			out = err.Error()
		}
		fmt.Fprintf(&b, "=== kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	return b.String()
}

// stop marks an error that ends eventually at once: waiting longer would
// not change it.
type stop struct{ error }

// stopWaiting returns an error that makes eventually fail at once.
func stopWaiting(format string, args ...any) error { return stop{fmt.Errorf(format, args...)} }

// eventually polls cond every second, with the test's context, until it
// returns nil. It fails the test when timeout passes, the test's context
// ends or cond returns a stopWaiting error, with cond's last error, the
// admin cluster's state and what diags add.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) error, diags ...func() string) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		err := cond(ctx)
		if errors.As(err, new(stop)) {
			return false, err
		}
		// Errors in the last seconds are often the deadline's own doing
		// (a client's rate limiter will not wait past it): the one
		// before says more.
		if deadline, ok := ctx.Deadline(); last == nil || !ok || time.Until(deadline) > 5*time.Second {
			last = err
		}
		return err == nil, nil
	})
	if err == nil {
		return
	}
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d())
	}
	b.WriteString(clusterState(t))
	if errors.As(err, new(stop)) {
		t.Fatalf("waiting for %s: %v\n%s", what, err, b.String())
	}
	t.Fatalf("gave up after %s waiting for %s (%v); last: %v\n%s", timeout, what, err, last, b.String())
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

// onePID returns the process match selects, or 0 when none runs; it fails
// the test when more than one does.
func onePID(t *testing.T, what string, match func(hostproc.Process) bool) int {
	t.Helper()
	ps := hostproc.Find(match)
	switch len(ps) {
	case 0:
		return 0
	case 1:
		return ps[0].PID
	}
	t.Fatalf("%d processes for %s: %v", len(ps), what, ps)
	return 0
}

// shims lists the containerd shims running on the machine.
func shims() []hostproc.Process {
	return hostproc.Find(func(p hostproc.Process) bool { return strings.HasPrefix(p.Name(), "containerd-shim") })
}

// requireNothingLeft fails the test with every host object of ours left
// after a teardown: processes (container shims and anything running a
// binary from the state directory included), mounts, interfaces,
// namespaces, iptables chains and cgroups. Independently of how teardown
// tells its processes apart, any container shim that did not run before
// the suite counts as left behind.
func requireNothingLeft(t *testing.T) {
	t.Helper()
	left := admincluster.Leftovers(t.Context(), config(t))
	for _, p := range shims() {
		if !slices.Contains(shimsBefore, p.PID) {
			left = append(left, fmt.Sprintf("container shim %s", p))
		}
	}
	if len(left) > 0 {
		t.Fatalf("down left behind:\n  %s", strings.Join(left, "\n  "))
	}
}

// createTenants creates tenants through the CLI at once, without waiting
// for them, and fails the test on its own goroutine with every error.
func createTenants(t *testing.T, names ...string) {
	t.Helper()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			if r := run(t, "create", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
				errs[i] = fmt.Errorf("create cluster %s:\n%s", name, r)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
