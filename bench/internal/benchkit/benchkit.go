// Package benchkit is what the benchmark commands share: building the
// binary under test, running and timing commands, waiting for tenants,
// summarising samples and writing the Markdown reports.
package benchkit

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/scheme"
)

// BuildBinary builds kubinception from the repository (the working
// directory) into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "kubinception")
	_, err := Run(nil, "go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/kubinception")
	return bin, err
}

// Run runs a command with env added to this process's environment (and
// CGO off, for builds) and returns its combined output; an error carries
// the output.
func Run(env []string, name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Timed runs a command like Run and returns how long it took.
func Timed(env []string, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	_, err := Run(env, name, args...)
	return time.Since(start), err
}

// Median is the middle sample (the upper one of an even count).
func Median[T cmp.Ordered](samples []T) T {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[len(s)/2]
}

// Worst is the largest sample.
func Worst[T cmp.Ordered](samples []T) T { return slices.Max(samples) }

// Millis formats d in milliseconds, for reports.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// Seconds formats d in seconds with one decimal, for reports.
func Seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// Ratio is a / b.
func Ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// Machine describes where a benchmark ran, e.g. "vm (2 cores)".
func Machine() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s (%d cores)", h, runtime.NumCPU())
}

// Now is the time a report is stamped with.
func Now() string { return time.Now().UTC().Format("2006-01-02 15:04 UTC") }

// WriteReport prints a report and writes it to path.
func WriteReport(path, report string) error {
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(report), 0o644)
}

// Operator is an admin cluster brought up for a benchmark with the
// operator installed.
type Operator struct {
	// Bin is the kubinception binary, in a temporary directory; Root the
	// admin cluster's state directory and Kubeconfig its admin kubeconfig.
	Bin, Root, Kubeconfig string
	// Client reaches the admin cluster.
	Client client.Client
	// Config is the admin cluster's recorded configuration.
	Config admincluster.Config
}

// UpWithOperator builds kubinception, brings the admin cluster up under
// root and installs the operator. The Operator it returns, even with an
// error, is to be stopped with Down (or released with Close).
func UpWithOperator(root string) (*Operator, error) {
	o := &Operator{Root: root, Kubeconfig: filepath.Join(root, "admin.conf")}
	dir, err := os.MkdirTemp("", "kubinception-bench-")
	if err != nil {
		return o, err
	}
	if o.Bin, err = BuildBinary(dir); err != nil {
		return o, err
	}
	if _, err := Run(nil, o.Bin, "admin", "up", "--root", root); err != nil {
		return o, err
	}
	if err := o.Kubinception("install"); err != nil {
		return o, err
	}
	if o.Client, err = AdminClient(o.Kubeconfig); err != nil {
		return o, err
	}
	o.Config, _, err = admincluster.LoadSaved(root)
	return o, err
}

// Down stops the admin cluster, removes its state and the binary.
func (o *Operator) Down() error {
	defer o.Close()
	if o.Bin == "" {
		return nil
	}
	_, err := Run(nil, o.Bin, "admin", "down", "--purge", "--root", o.Root)
	return err
}

// Close removes the binary and leaves the admin cluster running.
func (o *Operator) Close() {
	if o.Bin != "" {
		_ = os.RemoveAll(filepath.Dir(o.Bin))
	}
}

// Kubinception runs the binary with args and the admin kubeconfig and
// root the command needs.
func (o *Operator) Kubinception(args ...string) error {
	_, err := Run(nil, o.Bin, append(args, "--kubeconfig", o.Kubeconfig, "--root", o.Root)...)
	return err
}

// CreateTenant creates tc and waits until it is usable (WaitTenantUsable,
// 5 minutes). The function it returns deletes the tenant and waits for it
// to go; call it even after an error.
func (o *Operator) CreateTenant(ctx context.Context, tc *kv1.TenantCluster) (*kv1.TenantCluster, func(), error) {
	remove := func() {}
	if err := o.Client.Create(ctx, tc); err != nil {
		return nil, remove, err
	}
	remove = func() { _ = o.Kubinception("delete", "cluster", tc.Name, "-n", tc.Namespace, "--wait") }
	ready, err := WaitTenantUsable(ctx, o.Client, client.ObjectKeyFromObject(tc), 5*time.Minute)
	return ready, remove, err
}

// AdminClient connects to the admin cluster with a rate limit high enough
// for a benchmark that polls many tenants.
func AdminClient(kubeconfig string) (client.Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	return client.New(rc, client.Options{Scheme: scheme.New()})
}

// TenantClient connects to a tenant with its admin kubeconfig.
func TenantClient(ctx context.Context, c client.Client, tc *kv1.TenantCluster) (kubernetes.Interface, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Status.AdminKubeconfigSecret}, s); err != nil {
		return nil, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(s.Data["kubeconfig"])
	if err != nil {
		return nil, err
	}
	rc.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(rc)
}

// WaitTenantUsable waits until the tenant is Ready and its API server
// answers /readyz with the tenant's admin kubeconfig, polling every 100ms.
func WaitTenantUsable(ctx context.Context, c client.Client, key types.NamespacedName, timeout time.Duration) (*kv1.TenantCluster, error) {
	tc := &kv1.TenantCluster{}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tc); err != nil || !meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
			return false, nil
		}
		cs, err := TenantClient(ctx, c, tc)
		if err != nil {
			return false, nil
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
	if err != nil {
		return nil, fmt.Errorf("tenant %s not Ready and usable within %s: %w", key, timeout, err)
	}
	return tc, nil
}

// ReplaceSection rewrites, in the report at path, the level-two section
// whose heading line is "## "+heading (up to the next level-two heading or
// the end) with section, which starts with that heading line, so one part
// of a benchmark can be measured again while the rest of its report stays
// from the run that wrote it.
func ReplaceSection(path, heading, section string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	out, err := replaceSection(string(data), heading, section)
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	fmt.Print(section)
	return os.WriteFile(path, []byte(out), 0o644)
}

func replaceSection(report, heading, section string) (string, error) {
	marker := "\n## " + heading + "\n"
	start := strings.Index(report, marker)
	if start < 0 {
		return "", fmt.Errorf("no section %q", heading)
	}
	start++
	end := len(report)
	if i := strings.Index(report[start+len(marker)-1:], "\n## "); i >= 0 {
		end = start + len(marker) - 1 + i + 1
	}
	return report[:start] + strings.TrimLeft(section, "\n") + report[end:], nil
}
