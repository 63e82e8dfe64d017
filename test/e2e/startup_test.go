package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// TestManyTenantsAtOnce creates twenty tenants at once and waits for all
// of them to be Ready: the operator starts a few control planes at a time
// (--max-starting-control-planes) so they do not starve each other, and
// no API server is restarted by its probes while it waits for the CPU.
// The times go to the log, not into assertions; bench/tenants measures
// them.
func TestManyTenantsAtOnce(t *testing.T) {
	requireE2E(t)
	if os.Getenv("KUBINCEPTION_E2E_MANY") == "" {
		// Twenty control planes take minutes and most of a 2-core
		// machine; this test has not yet run green beside the rest of
		// the suite, so CI runs it only when asked.
		t.Skip("set KUBINCEPTION_E2E_MANY=1 to create 20 tenants at once")
	}
	upAndInstall(t)
	const n = 20
	c := adminClient(t)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("many-%02d", i)
	}
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), append([]string{"-n", "default", "delete", "tenantclusters", "--timeout=5m"}, names...)...)
	})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, name := range names {
		wg.Go(func() {
			tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
			if err := c.Create(t.Context(), tc); err != nil {
				errs <- fmt.Errorf("create %s: %w", name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	ready := map[string]time.Duration{}
	waited := map[string]bool{}
	eventually(t, 15*time.Minute, fmt.Sprintf("%d tenants created at once to be Ready", n), func(ctx context.Context) error {
		var list kv1.TenantClusterList
		if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
			return err
		}
		for _, tc := range list.Items {
			if cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionControlPlaneAvailable); cond != nil && cond.Reason == kv1.ReasonWaitingToStart {
				waited[tc.Name] = true
			}
			if _, ok := ready[tc.Name]; !ok && meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
				ready[tc.Name] = time.Since(start)
			}
		}
		var missing []string
		for _, name := range names {
			if _, ok := ready[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d Ready; not yet: %v", n-len(missing), n, missing)
		}
		return nil
	})
	var first, last time.Duration
	for _, d := range ready {
		if first == 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	t.Logf("%d tenants created at once: first Ready after %s, all after %s; %d were seen waiting for a start slot", n, first.Round(time.Second), last.Round(time.Second), len(waited))

	// A starved API server is waited for, not killed: its startup probe
	// allows minutes, and the probes after start only run once it is up.
	var pods corev1.PodList
	if err := c.List(t.Context(), &pods, client.InNamespace("default"), client.HasLabels{controlplane.LabelTenant}); err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, p := range pods.Items {
		if !slices.Contains(names, p.Labels[controlplane.LabelTenant]) {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if cs.Name != "kube-apiserver" {
				continue
			}
			counted++
			if cs.RestartCount > 0 {
				t.Errorf("pod %s: kube-apiserver restarted %d times while %d control planes started", p.Name, cs.RestartCount, n)
			}
		}
	}
	if counted < n {
		t.Errorf("found %d kube-apiserver containers among the control-plane pods, want at least %d", counted, n)
	}
}
