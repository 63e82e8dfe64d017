package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
)

// TestCertificateRotation rotates a tenant's certificates under load: one
// tenant with two joined workers and a Deployment, leaf certificates that
// live four minutes, a kubectl that polls the tenant and its nodes the
// whole time. The leaves are renewed on schedule and on request; nothing
// the customer runs notices.
func TestCertificateRotation(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "rot"
	t.Cleanup(func() { removeTenants(t, name) })
	mustApply(t, adminKubeconfig(), `
apiVersion: kubinception.dev/v1alpha1
kind: TenantCluster
metadata: {name: rot, namespace: default}
spec:
  certificates: {validity: 4m}
`)
	waitTenantReady(t, name)
	c := adminClient(t)
	kc := tenantKubeconfig(t, name)
	diags := func() string { return certState(c, name) + controlPlaneLogs(name) + tenantState(t, kc) }
	nodeAdd(t, name)
	nodeAdd(t, name)
	nodesReady(t, kc, 2)
	// A web Deployment on both nodes, reached through its Service, with
	// kubectl logs and exec.
	testWorkloads(t, kc, 2)

	t.Run("leaf", func(t *testing.T) { testLeafRotation(t, c, name, kc, diags) })
}

// testLeafRotation waits for a renewal on schedule, then asks for one with
// rotate certs --wait, then moves the tenant to hour-long certificates
// (which reissues them all once more), while a kubectl polls the tenant's
// Deployment and nodes; each ends with the control plane rolled onto the
// new certificates, and no request of the poller failed.
func testLeafRotation(t *testing.T, c client.Client, name, kc string, diags func() string) {
	poll := startPoller(t, kc)
	tc, err := getTenant(t.Context(), c, name)
	if err != nil {
		t.Fatal(err)
	}
	before := tc.Status.Certificates.LastRotationTime
	start := time.Now()
	// Four-minute leaves are renewed 2m40s after they were issued, which
	// leaves a roll of the control plane 80 s before the old pod's
	// certificates expire.
	eventually(t, 5*time.Minute, "a renewal on schedule", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err != nil {
			return err
		}
		if last := tc.Status.Certificates.LastRotationTime; last == nil || before != nil && !last.After(before.Time) {
			return fmt.Errorf("status.certificates %+v", tc.Status.Certificates)
		}
		return nil
	}, diags)
	waitCertsRolledOut(t, c, name, diags)
	t.Logf("renewal on schedule rolled out %s after the test began", time.Since(start).Round(time.Second))

	start = time.Now()
	r := run(t, "rotate", "certs", name, "--wait", "--timeout", "5m", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("rotate certs:\n%s\n%s", r, diags())
	}
	t.Logf("rotate certs --wait took %s:\n%s", time.Since(start).Round(time.Second), r.stdout)
	events := mustKube(t, "-n", "default", "get", "events", "--field-selector", "involvedObject.name="+name+",reason="+kv1.ReasonCertificatesRotated, "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
	if !strings.Contains(events, "requested") {
		t.Errorf("no %s Event for the requested rotation; events:\n%s", kv1.ReasonCertificatesRotated, events)
	}

	// Hour-long leaves from here on: one more reissue, and a quiet
	// control plane for what follows.
	mustKube(t, "-n", "default", "patch", "tenantcluster", name, "--type", "merge", "-p", `{"spec":{"certificates":{"validity":"1h"}}}`)
	eventually(t, 2*time.Minute, "hour-long certificates", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err != nil {
			return err
		}
		if na := tc.Status.Certificates.NotAfter; na == nil || time.Until(na.Time) < 30*time.Minute {
			return fmt.Errorf("status.certificates %+v", tc.Status.Certificates)
		}
		return nil
	}, diags)
	waitCertsRolledOut(t, c, name, diags)

	// The tunnel still carries logs and exec to the nodes once their
	// agents have reconnected to the rolled control plane (until then
	// exec is answered 503 by the tunnel: the time it takes is logged).
	rolled := time.Now()
	eventually(t, 2*time.Minute, "kubectl exec through the tunnel after the roll", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://127.0.0.1:8080/", "10")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(out, "hello from web-") {
			return stopWaiting("kubectl exec got %q", out)
		}
		return nil
	}, diags)
	t.Logf("exec through the tunnel worked %s after the control plane rolled", time.Since(rolled).Round(time.Millisecond))
	mustTkube(t, kc, "logs", "deploy/web")
	polls, failures := poll.stop()
	t.Logf("%d polls of the Deployment and nodes during the rotations", polls)
	if polls == 0 || len(failures) > 0 {
		t.Errorf("%d polls, %d failed:\n%s\n%s", polls, len(failures), strings.Join(failures, "\n"), diags())
	}
}

// poller runs kubectl against a tenant in a loop, as a customer's scripts
// would, each run a new process and connection, and records every run
// that failed or found a node not Ready.
type poller struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	polls    int
	failures []string
}

func startPoller(t *testing.T, kc string) *poller {
	ctx, cancel := context.WithCancel(t.Context())
	p := &poller{cancel: cancel}
	p.wg.Go(func() {
		for ctx.Err() == nil {
			at := time.Now().Format("15:04:05.000")
			out, err := kubectlIn(ctx, kc, "", "get", "deployments,nodes", "-n", "default", "-o",
				`jsonpath={range .items[*]}{.kind} {.status.readyReplicas} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.polls++
			switch {
			case err != nil:
				p.failures = append(p.failures, at+" "+err.Error())
			case strings.Count(out, "Node ") != 2 || strings.Count(out, "Node  True") != 2 || !strings.Contains(out, "Deployment 2"):
				p.failures = append(p.failures, at+" "+strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *poller) stop() (int, []string) {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls, p.failures
}

// waitCertsRolledOut waits until every control-plane pod of the tenant
// runs the PKI Secret as it is now.
func waitCertsRolledOut(t *testing.T, c client.Client, name string, diags func() string) {
	t.Helper()
	eventually(t, 5*time.Minute, "the control plane to run the current certificates", func(ctx context.Context) error {
		secret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controlplane.PKISecretName(name)}, secret); err != nil {
			return err
		}
		dep := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controlplane.DeploymentName(name)}, dep); err != nil {
			return err
		}
		st := dep.Status
		if dep.Spec.Template.Annotations[controlplane.AnnotationPKIHash] != objects.HashData(secret.Data) ||
			st.ObservedGeneration < dep.Generation || st.Replicas != st.UpdatedReplicas || st.AvailableReplicas != *dep.Spec.Replicas {
			return fmt.Errorf("deployment status %+v", st)
		}
		return nil
	}, diags)
}

// certState is the tenant's certificate status and CertificatesReady.
func certState(c client.Client, name string) string {
	tc, err := getTenant(context.Background(), c, name)
	if err != nil {
		return fmt.Sprintf("\ntenant %s: %v\n", name, err)
	}
	cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionCertificatesReady)
	return fmt.Sprintf("\nstatus.certificates: %+v\nCertificatesReady: %+v\n", tc.Status.Certificates, cond)
}
