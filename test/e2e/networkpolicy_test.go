package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// testNetworkPolicyAcrossNodes checks the networkPolicy addon on a tenant
// whose web Deployment runs one pod on each of two nodes: without a policy
// a web pod reaches the other node's; a default-deny ingress policy blocks
// that; an allow rule for app=web lets web pods through again and nobody
// else (a client pod stays blocked). The policies are removed afterwards,
// so later steps see the namespace open again.
func testNetworkPolicyAcrossNodes(t *testing.T, kc string) {
	t.Helper()
	mustTkube(t, kc, "-n", "kube-system", "rollout", "status", "daemonset/"+tenantbootstrap.CalicoNodeName, "--timeout=180s")
	mustApply(t, kc, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: np-client, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: np-client}}
  template:
    metadata: {labels: {app: np-client}}
    spec:
      containers:
      - {name: client, image: %s, imagePullPolicy: Never, args: [pause]}
`, config(t).Images.Tinyhost()))
	mustTkube(t, kc, "rollout", "status", "deployment/np-client", "--timeout=180s")
	t.Cleanup(func() {
		_, _ = tkube(t, kc, "delete", "networkpolicy", "np-deny", "np-allow-web", "--ignore-not-found")
		_, _ = tkube(t, kc, "delete", "deployment", "np-client", "--ignore-not-found", "--wait=false")
	})

	// One web pod per node: "from" execs on one, "to" is the other's IP.
	lines := strings.Split(strings.TrimSpace(mustTkube(t, kc, "get", "pods", "-l", "app=web",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}`)), "\n")
	if len(lines) < 2 {
		t.Fatalf("web pods: %q, want two\n%s", lines, tenantState(t, kc))
	}
	from, to := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(from) != 3 || len(to) != 3 || from[1] == to[1] {
		t.Fatalf("web pods %q and %q must run on two nodes", lines[0], lines[1])
	}
	url := "http://" + to[2] + ":8080/"
	client := "deploy/np-client"
	reach := func(ctx context.Context, pod string) error {
		out, err := kubectlIn(ctx, kc, "", "exec", pod, "--", "/usr/local/bin/tinyhost", "get", url, "1")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(out, "hello from web-") {
			return fmt.Errorf("%s answered %q", url, out)
		}
		return nil
	}
	allowed := func(pod, what string) {
		t.Helper()
		eventually(t, 2*time.Minute, what, func(ctx context.Context) error { return reach(ctx, pod) },
			func() string { return tenantState(t, kc) })
	}
	blocked := func(pod, what string) {
		t.Helper()
		eventually(t, 2*time.Minute, what, func(ctx context.Context) error {
			err := reach(ctx, pod)
			if err == nil {
				return fmt.Errorf("%s still reached %s", pod, url)
			}
			// Only a request that ran and got no answer counts, not an
			// exec that failed for another reason.
			if !strings.Contains(err.Error(), "failed after 1 attempts") {
				return fmt.Errorf("exec in %s: %w", pod, err)
			}
			return nil
		}, func() string { return tenantState(t, kc) })
	}

	allowed("pod/"+from[0], fmt.Sprintf("web pod on %s to reach %s on %s without any policy", from[1], to[0], to[1]))
	allowed(client, "the client to reach the web pod without any policy")

	mustApply(t, kc, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)
	blocked("pod/"+from[0], "default-deny to block the web pod on the other node")
	blocked(client, "default-deny to block the client")

	mustApply(t, kc, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-allow-web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 8080, protocol: TCP}]
`)
	allowed("pod/"+from[0], "the allow rule to let the web pod through again")
	// The client is not app=web: the allow rule must not open the door to it.
	blocked(client, "the client to stay blocked: the allow rule is for app=web only")

	mustTkube(t, kc, "delete", "networkpolicy", "np-deny", "np-allow-web")
	allowed(client, "the client to reach the web pod once the policies are gone")
}
