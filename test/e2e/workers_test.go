package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWorkers joins local worker machines to tenant clusters with the
// upstream kubeadm join and checks what customers rely on: nodes Ready,
// pods across nodes, Services, DNS, logs and exec, rescheduling when a
// worker goes, isolation between tenants with nodes, refused joins that
// leave nothing behind, and a teardown that leaves nothing on the machine.
// The subtests are one scenario, in order: each starts from what the
// previous ones left, and the scenario stops at the first that fails.
func TestWorkers(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	createTenants(t, "wa", "wb")
	waitTenantReady(t, "wa")
	waitTenantReady(t, "wb")
	ka, kb := tenantKubeconfig(t, "wa"), tenantKubeconfig(t, "wb")

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"two workers join with kubeadm", func(t *testing.T) {
			nodeAdd(t, "wa")
			nodeAdd(t, "wa")
			nodesReady(t, ka, 2)
		}},
		{"pods across nodes, Service, DNS, logs and exec", func(t *testing.T) { testWorkloads(t, ka, 3) }},
		{"two tenants with nodes stay apart", func(t *testing.T) { testTenantsApart(t, ka, kb) }},
		{"refused joins leave nothing half-joined", func(t *testing.T) { testRefusedJoins(t, ka) }},
		{"removing a worker reschedules its pods", func(t *testing.T) { testRemoveWorker(t, ka) }},
		{"down removes workers and leaves nothing", func(t *testing.T) {
			if r := run(t, "admin", "down"); r.err != nil {
				t.Fatalf("down:\n%s", r)
			}
			requireNothingLeft(t)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			t.FailNow()
		}
	}
}

func nodeAdd(t *testing.T, tenant string, extra ...string) result {
	t.Helper()
	start := time.Now()
	r := run(t, append([]string{"node", "add", tenant, "--kubeconfig", adminKubeconfig(), "--root", root}, extra...)...)
	if len(extra) == 0 {
		if r.err != nil {
			t.Fatalf("node add %s:\n%s\n%s", tenant, r, clusterState(t))
		}
		t.Logf("node add %s took %s", tenant, time.Since(start).Round(time.Millisecond))
	}
	return r
}

func nodesReady(t *testing.T, kc string, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d Ready nodes", n), func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != n || strings.Count(out, "True") != n {
			return fmt.Errorf("node Ready states: %q", out)
		}
		return nil
	}, func() string { return tenantState(t, kc) })
}

// testWorkloads runs a web Deployment spread over the nodes, then reaches
// it from another pod through its ClusterIP and its DNS name, and uses
// kubectl logs and exec.
func testWorkloads(t *testing.T, kc string, replicas int) {
	t.Helper()
	mustApply(t, kc, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        args: [serve, "8080"]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, replicas, config(t).Images.Tinyhost()))
	mustTkube(t, kc, "rollout", "status", "deployment/web", "--timeout=180s")
	nodes := strings.Fields(mustTkube(t, kc, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"))
	if len(nodes) != replicas {
		t.Fatalf("%d web pods scheduled (%v), want %d\n%s", len(nodes), nodes, replicas, tenantState(t, kc))
	}
	distinct := map[string]bool{}
	for _, n := range nodes {
		distinct[n] = true
	}
	if want := min(replicas, 2); len(distinct) < want {
		t.Fatalf("web replicas run on %v, want %d nodes", distinct, want)
	}
	testServiceOnce(t, kc)
	if out := mustTkube(t, kc, "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://web/", "30"); !strings.HasPrefix(out, "hello from web-") {
		t.Fatalf("kubectl exec got %q\n%s", out, tenantState(t, kc))
	}
}

// testServiceOnce reaches the web Service from a new pod, by ClusterIP and
// by DNS name, and reads the answers with kubectl logs.
func testServiceOnce(t *testing.T, kc string) {
	t.Helper()
	img := config(t).Images.Tinyhost()
	ip := mustTkube(t, kc, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if ip == "" {
		t.Fatal("the web Service has no ClusterIP")
	}
	for i, url := range []string{"http://" + ip + "/", "http://web.default.svc.cluster.local/"} {
		pod := fmt.Sprintf("client-%d-%d", i, time.Now().UnixNano()%100000)
		mustTkube(t, kc, "run", pod, "--image="+img, "--image-pull-policy=Never", "--restart=Never", "--command", "--",
			"/usr/local/bin/tinyhost", "get", url, "60")
		waitPodSucceeded(t, kc, "default", pod, "reach "+url)
		if logs := mustTkube(t, kc, "logs", pod); !strings.HasPrefix(logs, "hello from web-") {
			t.Fatalf("kubectl logs %s: %q", pod, logs)
		}
		mustTkube(t, kc, "delete", "pod", pod, "--wait=false")
	}
}

// testTenantsApart gives the second tenant a worker and its own web
// Deployment, and checks that neither tenant sees the other's nodes or
// pods while both reach their own Service over the same default pod range.
func testTenantsApart(t *testing.T, ka, kb string) {
	nodeAdd(t, "wb")
	nodesReady(t, kb, 1)
	testWorkloads(t, kb, 1)
	na, nb := names(t, ka, "get", "nodes"), names(t, kb, "get", "nodes")
	for _, n := range nb {
		if slices.Contains(na, n) {
			t.Errorf("tenant wa sees wb's %s", n)
		}
	}
	pa, pb := names(t, ka, "get", "pods", "-A"), names(t, kb, "get", "pods", "-A")
	var webB []string
	for _, p := range pb {
		if strings.HasPrefix(p, "pod/web-") {
			webB = append(webB, p)
			if slices.Contains(pa, p) {
				t.Errorf("tenant wa sees wb's %s", p)
			}
		}
	}
	if len(webB) == 0 {
		t.Fatalf("wb lists no web pod among %v", pb)
	}
	// Both tenants use the default pod range 10.244.0.0/16; each still
	// reaches its own Service while the other runs.
	testServiceOnce(t, ka)
	testServiceOnce(t, kb)
}

func testRefusedJoins(t *testing.T, ka string) {
	r := run(t, "join-command", "wa", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("join-command:\n%s", r)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 7 || f[0] != "kubeadm" || f[1] != "join" {
		t.Fatalf("join-command printed %q", r.stdout)
	}
	token, hash := f[4], f[6]
	expired := "exp001.0123456789abcdef"
	mustApply(t, ka, fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","type":"bootstrap.kubernetes.io/token","metadata":{"name":"bootstrap-token-exp001","namespace":"kube-system"},
"stringData":{"token-id":"exp001","token-secret":"0123456789abcdef","expiration":%q,"usage-bootstrap-authentication":"true","usage-bootstrap-signing":"true","auth-extra-groups":"system:bootstrappers:kubeadm:default-node-token"}}`,
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)))
	cases := []struct {
		name, token, hash, want string
	}{
		{"wrong token", "zzzzzz.0123456789abcdef", hash, `could not find a JWS signature in the cluster-info ConfigMap for token ID "zzzzzz"`},
		{"expired token", expired, hash, `could not find a JWS signature in the cluster-info ConfigMap for token ID "exp001"`},
		{"wrong CA hash", token, "sha256:" + strings.Repeat("1", 64), "none of the public keys"},
	}
	before := names(t, ka, "get", "nodes")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := nodeAdd(t, "wa", "--name", "wa-bad", "--token", c.token, "--discovery-token-ca-cert-hash", c.hash, "--discovery-timeout", "15s")
			if r.err == nil || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("want kubeadm's error %q:\n%s", c.want, r)
			}
			if after := names(t, ka, "get", "nodes"); !slices.Equal(after, before) {
				t.Fatalf("nodes changed after a refused join: before %v after %v", before, after)
			}
			list := run(t, "node", "list", "wa", "--root", root)
			if list.err != nil || !strings.Contains(list.stdout, "wa-w1") {
				t.Fatalf("node list does not list the joined workers:\n%s", list)
			}
			if strings.Contains(list.stdout, "wa-bad") {
				t.Fatalf("the refused worker is still recorded:\n%s", list.stdout)
			}
			entries, err := os.ReadDir("/run/netns")
			if err != nil {
				t.Fatal(err)
			}
			var ours []string
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "kubi-") {
					ours = append(ours, e.Name())
				}
			}
			if len(ours) != 3 {
				t.Fatalf("network namespaces %v, want the 3 of the joined workers only", ours)
			}
		})
	}
}

func testRemoveWorker(t *testing.T, ka string) {
	r := run(t, "node", "remove", "wa", "wa-w1", "--kubeconfig", adminKubeconfig(), "--root", root)
	if r.err != nil {
		t.Fatalf("node remove:\n%s", r)
	}
	eventually(t, 3*time.Minute, "all web replicas running on wa-w2", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, ka, "", "get", "pods", "-l", "app=web", "--field-selector=status.phase=Running",
			"-o", "jsonpath={range .items[*]}{.spec.nodeName}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		running := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 1 && f[0] == "wa-w2" {
				running++
			}
		}
		if running != 3 {
			return fmt.Errorf("%d of 3 replicas running on wa-w2: %q", running, out)
		}
		return nil
	}, func() string { return tenantState(t, ka) })
	if nodes := names(t, ka, "get", "nodes"); slices.Contains(nodes, "node/wa-w1") || !slices.Contains(nodes, "node/wa-w2") {
		t.Fatalf("nodes after removing wa-w1: %v, want wa-w2 only", nodes)
	}
}
