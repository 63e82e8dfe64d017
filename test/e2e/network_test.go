package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// TestNetwork checks the node tunnel and the fence on the local admin
// node: workers behind NAT (nothing on the admin side can connect to
// them) still serve logs, exec and port-forward through the tunnel, with
// two control-plane replicas and after the agents and the tunnel servers
// are killed; a tenant administrator pointing a Node at admin-cluster
// addresses reaches nothing; and a tenant API server without the tunnel
// that dials a tenant address is refused on the admin node, where the
// refusal is counted, instead of sending the packets off the machine.
func TestNetwork(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	var wg sync.WaitGroup
	errs := make([]result, 2)
	wg.Go(func() {
		errs[0] = run(t, "create", "cluster", "na", "--replicas", "2", "--kubeconfig", adminKubeconfig())
	})
	wg.Go(func() { errs[1] = run(t, "create", "cluster", "nb", "--kubeconfig", adminKubeconfig()) })
	wg.Wait()
	for _, r := range errs {
		if r.err != nil {
			t.Fatalf("create cluster:\n%s", r)
		}
	}
	mustKube(t, "patch", "tenantcluster", "nb", "--type=merge", "-p", `{"spec":{"addons":{"tunnel":{"enabled":false}}}}`)
	waitTenantReady(t, "na")
	waitTenantReady(t, "nb")
	ka, kb := tenantKubeconfig(t, "na"), tenantKubeconfig(t, "nb")

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"workers behind NAT join", func(t *testing.T) {
			for range 2 {
				if r := nodeAdd(t, "na", "--reachable=false"); r.err != nil {
					t.Fatalf("node add na --reachable=false:\n%s\n%s", r, clusterState(t))
				}
			}
			nodesReady(t, ka, 2)
			mustTkube(t, ka, "-n", "kube-system", "rollout", "status", "daemonset/"+tenantbootstrap.TunnelAgentName, "--timeout=180s")
			for _, ip := range nodeIPs(t, ka) {
				requireUnreachable(t, net.JoinHostPort(ip, "10250"))
			}
		}},
		{"logs, exec and port-forward through the tunnel", func(t *testing.T) {
			testWorkloads(t, ka, 2)
			testPortForward(t, ka)
		}},
		{"again after the agents and the tunnel servers are killed", func(t *testing.T) {
			mustTkube(t, ka, "-n", "kube-system", "delete", "pods", "-l", "k8s-app="+tenantbootstrap.TunnelAgentName, "--wait=false")
			killTunnelServers(t)
			// Each check runs until it passes: the agents come back and
			// find both servers again.
			eventually(t, 3*time.Minute, "kubectl exec through the restarted tunnel", func(ctx context.Context) error {
				for range 4 {
					out, err := kubectlIn(ctx, ka, "", "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://web/", "10")
					if err != nil {
						return err
					}
					if !strings.HasPrefix(out, "hello from web-") {
						return fmt.Errorf("exec answered %q", out)
					}
				}
				return nil
			}, func() string { return tenantState(t, ka) })
			testServiceOnce(t, ka)
			testPortForward(t, ka)
		}},
		{"a Node pointing at the admin cluster reaches nothing", func(t *testing.T) {
			testAdminProbes(t, ka)
		}},
		{"without the tunnel, tenant addresses are refused on the admin node", func(t *testing.T) {
			testRefusedTenantRange(t, kb)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			t.FailNow()
		}
	}
}

func nodeIPs(t *testing.T, kc string) []string {
	t.Helper()
	ips := strings.Fields(mustTkube(t, kc, "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{" "}{end}`))
	if len(ips) == 0 {
		t.Fatalf("no node InternalIPs\n%s", tenantState(t, kc))
	}
	return ips
}

// requireUnreachable checks that the admin node cannot open a connection
// to address (a worker's): behind NAT, the connection attempt is dropped.
func requireUnreachable(t *testing.T, address string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", address, 3*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("the admin node connected to %s: the worker is not behind NAT", address)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connecting to %s: %v, want a timeout (the connection attempt dropped)", address, err)
	}
}

// testPortForward forwards a local port to the web Deployment with
// kubectl port-forward and fetches a page through it.
func testPortForward(t *testing.T, kc string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "port-forward", "deploy/web", ":8080", "--address", "127.0.0.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// "Forwarding from 127.0.0.1:PORT -> 8080"
	re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var p string
	select {
	case p = <-port:
	case <-ctx.Done():
		t.Fatalf("kubectl port-forward did not start: %s\n%s", stderr.String(), tenantState(t, kc))
	}
	resp, err := http.Get("http://127.0.0.1:" + p + "/")
	if err != nil {
		t.Fatalf("GET through port-forward: %v (kubectl: %s)\n%s", err, stderr.String(), tenantState(t, kc))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "hello from web-") {
		t.Fatalf("through port-forward: %d %q", resp.StatusCode, body)
	}
}

// killTunnelServers kills every tunnel server process on the machine;
// the kubelet restarts the containers.
func killTunnelServers(t *testing.T) {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "kubinception tunnel server").Output()
	pids := strings.Fields(string(out))
	if err != nil || len(pids) < 2 {
		t.Fatalf("tunnel server processes: %q (%v), want one per control-plane replica", out, err)
	}
	for _, pid := range pids {
		if out, err := exec.Command("kill", "-9", pid).CombinedOutput(); err != nil {
			t.Fatalf("kill %s: %v: %s", pid, err, out)
		}
	}
	t.Logf("killed %d tunnel servers", len(pids))
}

// testAdminProbes registers a Node whose kubelet "lives" at the operator's
// metrics port, then at the admin API server on the node address, and
// asks the tenant API server to proxy to it: both must fail, and the
// fence on the admin node must have refused the attempts.
func testAdminProbes(t *testing.T, kc string) {
	t.Helper()
	operatorIP := mustKube(t, "-n", "kubinception-system", "get", "pods", "-l", "app.kubernetes.io/name=kubinception-manager", "-o", "jsonpath={.items[0].status.podIP}")
	if net.ParseIP(operatorIP) == nil {
		t.Fatalf("operator pod IP %q\n%s", operatorIP, clusterState(t))
	}
	mustApply(t, kc, "apiVersion: v1\nkind: Node\nmetadata: {name: probe}\n")
	t.Cleanup(func() { cleanupKubectl(t, kc, "delete", "node", "probe", "--ignore-not-found") })
	before := fenceCounts(t)
	for _, target := range []struct{ ip, port, path string }{
		{operatorIP, "8080", "metrics"},
		{config(t).NodeIP.String(), "6443", "version"},
	} {
		patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%s}}}}`, target.ip, target.port)
		mustTkube(t, kc, "patch", "node", "probe", "--subresource=status", "--type=merge", "-p", patch)
		out, err := tkube(t, kc, "get", "--raw", "/api/v1/nodes/probe:"+target.port+"/proxy/"+target.path)
		if err == nil {
			t.Fatalf("the tenant reached %s:%s through nodes/proxy:\n%.300s", target.ip, target.port, out)
		}
		t.Logf("nodes/proxy to %s:%s refused: %v", target.ip, target.port, err)
	}
	after := fenceCounts(t)
	for _, c := range []string{admincluster.FenceCommentWorkerPods, admincluster.FenceCommentWorkerHost} {
		if after[c] <= before[c] {
			t.Errorf("fence rule %q refused nothing (%d packets before, %d after): the attempt did not go where expected", c, before[c], after[c])
		}
	}
}

func fenceCounts(t *testing.T) map[string]uint64 {
	t.Helper()
	counts, err := admincluster.FenceCounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

// testRefusedTenantRange registers an aggregated API served by a tenant
// Service (with an endpoint, so the API server's availability check dials
// it) in a tenant without the tunnel: its API server dials the Service's
// address, a tenant range nothing on the admin node routes, and the fence
// refuses it there.
func testRefusedTenantRange(t *testing.T, kc string) {
	t.Helper()
	before := fenceCounts(t)
	mustApply(t, kc, `
apiVersion: v1
kind: Service
metadata: {name: probe, namespace: default}
spec:
  ports: [{port: 443, targetPort: 8443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: probe-1
  namespace: default
  labels: {kubernetes.io/service-name: probe}
addressType: IPv4
ports: [{port: 8443, protocol: TCP}]
endpoints: [{addresses: ["10.244.9.9"]}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.probe.kubinception.dev}
spec:
  group: probe.kubinception.dev
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true
  service: {name: probe, namespace: default, port: 443}
`)
	t.Cleanup(func() {
		cleanupKubectl(t, kc, "delete", "apiservice", "v1.probe.kubinception.dev", "--ignore-not-found")
	})
	eventually(t, 2*time.Minute, "the fence to refuse the API server's connection to a tenant Service address", func(ctx context.Context) error {
		now, err := admincluster.FenceCounts(ctx)
		if err != nil {
			return err
		}
		if now[admincluster.FenceCommentPrivate] <= before[admincluster.FenceCommentPrivate] {
			return fmt.Errorf("rule %q: %d packets, %d before", admincluster.FenceCommentPrivate, now[admincluster.FenceCommentPrivate], before[admincluster.FenceCommentPrivate])
		}
		return nil
	}, func() string { return mustTkube(t, kc, "get", "apiservice", "v1.probe.kubinception.dev", "-o", "yaml") })
	status := mustTkube(t, kc, "get", "apiservice", "v1.probe.kubinception.dev", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
	if status == "True" {
		t.Fatal("the APIService is Available although nothing may reach its Service")
	}
}
