package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/local/admincluster"
)

// TestWorkers joins local worker machines to tenant clusters with the
// upstream kubeadm join and checks what customers rely on: nodes Ready,
// pods across nodes, Services, DNS, logs and exec, rescheduling when a
// worker goes, isolation between tenants with nodes, refused joins that
// leave nothing behind, and a teardown that leaves nothing on the machine.
func TestWorkers(t *testing.T) {
	if r := run(t, "admin", "up"); r.err != nil {
		t.Fatalf("admin up:\n%s", r)
	}
	if r := run(t, "install", "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("install:\n%s", r)
	}
	var wg sync.WaitGroup
	for _, n := range []string{"wa", "wb"} {
		wg.Add(1)
		go func() { defer wg.Done(); createTenant(t, n) }()
	}
	wg.Wait()
	waitTenantReady(t, "wa")
	waitTenantReady(t, "wb")
	ka, kb := tenantKubeconfig(t, "wa"), tenantKubeconfig(t, "wb")

	if !t.Run("two workers join with kubeadm", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			nodeAdd(t, "wa")
		}
		nodesReady(t, ka, 2)
	}) {
		t.FailNow()
	}
	t.Run("pods across nodes, Service, DNS, logs and exec", func(t *testing.T) { testWorkloads(t, ka, 3) })
	t.Run("two tenants with nodes stay apart", func(t *testing.T) {
		nodeAdd(t, "wb")
		nodesReady(t, kb, 1)
		testWorkloads(t, kb, 1)
		na, _ := tkube(ka, "get", "nodes", "-o", "name")
		nb, _ := tkube(kb, "get", "nodes", "-o", "name")
		for _, n := range strings.Fields(nb) {
			if strings.Contains(na, n) {
				t.Errorf("tenant wa sees wb's %s", n)
			}
		}
		pa, _ := tkube(ka, "get", "pods", "-A", "-o", "name")
		pb, _ := tkube(kb, "get", "pods", "-A", "-o", "name")
		for _, p := range strings.Fields(pb) {
			if strings.Contains(p, "web-") && strings.Contains(pa, p) {
				t.Errorf("tenant wa sees wb's %s", p)
			}
		}
		// Both tenants use the default pod range 10.244.0.0/16; each still
		// reaches its own Service while the other runs.
		testServiceOnce(t, ka)
		testServiceOnce(t, kb)
	})
	t.Run("refused joins leave nothing half-joined", testRefusedJoins)
	t.Run("removing a worker reschedules its pods", func(t *testing.T) {
		r := run(t, "node", "remove", "wa", "wa-w1", "--kubeconfig", adminKubeconfig(), "--root", root)
		if r.err != nil {
			t.Fatalf("node remove:\n%s", r)
		}
		eventually(t, 3*time.Minute, "all web replicas running on wa-w2", func() error {
			out, err := tkube(ka, "get", "pods", "-l", "app=web", "--field-selector=status.phase=Running",
				"-o", "jsonpath={range .items[*]}{.spec.nodeName}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			running := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) == 1 && f[0] == "wa-w2" {
					running++
				}
			}
			if running != 3 {
				return fmt.Errorf("%d of 3 replicas running on wa-w2: %q", running, out)
			}
			return nil
		})
		if out, _ := tkube(ka, "get", "nodes", "-o", "name"); strings.Contains(out, "wa-w1") {
			t.Fatalf("removed node still listed: %s", out)
		}
	})
	t.Run("down removes workers and leaves nothing", func(t *testing.T) {
		if r := run(t, "admin", "down"); r.err != nil {
			t.Fatalf("down:\n%s", r)
		}
		if left := admincluster.Leftovers(context.Background(), config(t)); len(left) > 0 {
			t.Fatalf("down left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
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
	eventually(t, 3*time.Minute, fmt.Sprintf("%d Ready nodes", n), func() error {
		out, err := tkube(kc, "get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if f := strings.Fields(out); len(f) != n || strings.Count(out, "True") != n {
			return fmt.Errorf("node Ready states: %q", out)
		}
		return nil
	})
}

// tenantState describes a tenant for a failure message.
func tenantState(kc string) string {
	var b strings.Builder
	for _, args := range [][]string{{"get", "nodes", "-o", "wide"}, {"get", "pods", "-A", "-o", "wide"}, {"get", "events", "-A", "--sort-by=.lastTimestamp"}} {
		out, _ := tkube(kc, args...)
		fmt.Fprintf(&b, "=== kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	return b.String()
}

func tkubeApply(kc, manifest string) (string, error) {
	cmd := exec.Command(kubectl, "--kubeconfig", kc, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testWorkloads runs a web Deployment spread over the nodes, then reaches
// it from another pod through its ClusterIP and its DNS name, and uses
// kubectl logs and exec.
func testWorkloads(t *testing.T, kc string, replicas int) {
	t.Helper()
	img := config(t).Images.Tinyhost()
	manifest := fmt.Sprintf(`
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
`, replicas, img)
	if out, err := tkubeApply(kc, manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	rollout := exec.Command(kubectl, "--kubeconfig", kc, "rollout", "status", "deployment/web", "--timeout=180s")
	if out, err := rollout.CombinedOutput(); err != nil {
		t.Fatalf("rollout: %v\n%s\n%s", err, out, tenantState(kc))
	}
	nodes, _ := tkube(kc, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}")
	distinct := map[string]bool{}
	for _, n := range strings.Fields(nodes) {
		distinct[n] = true
	}
	want := min(replicas, 2)
	if len(distinct) < want {
		t.Fatalf("web replicas run on %v, want %d nodes", distinct, want)
	}
	testServiceOnce(t, kc)
	out, err := tkube(kc, "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://web/", "30")
	if err != nil || !strings.HasPrefix(out, "hello from web-") {
		t.Fatalf("kubectl exec: %v\n%s\n%s", err, out, tenantState(kc))
	}
}

// testServiceOnce reaches the web Service from a new pod, by ClusterIP and
// by DNS name, and reads the answers with kubectl logs.
func testServiceOnce(t *testing.T, kc string) {
	t.Helper()
	img := config(t).Images.Tinyhost()
	ip, err := tkube(kc, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatalf("%v: %s", err, ip)
	}
	for i, url := range []string{"http://" + ip + "/", "http://web.default.svc.cluster.local/"} {
		pod := fmt.Sprintf("client-%d-%d", i, time.Now().UnixNano()%100000)
		if out, err := tkube(kc, "run", pod, "--image="+img, "--image-pull-policy=Never", "--restart=Never", "--command", "--",
			"/usr/local/bin/tinyhost", "get", url, "60"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		eventually(t, 3*time.Minute, pod+" to reach "+url, func() error {
			phase, err := tkube(kc, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
			if err != nil {
				return fmt.Errorf("%v: %s", err, phase)
			}
			if phase == "Failed" {
				logs, _ := tkube(kc, "logs", pod)
				t.Fatalf("%s failed to reach %s: %s\n%s", pod, url, logs, tenantState(kc))
			}
			if phase != "Succeeded" {
				return fmt.Errorf("phase %s", phase)
			}
			return nil
		})
		logs, err := tkube(kc, "logs", pod)
		if err != nil || !strings.HasPrefix(logs, "hello from web-") {
			t.Fatalf("kubectl logs %s: %v %q", pod, err, logs)
		}
		_, _ = tkube(kc, "delete", "pod", pod, "--wait=false")
	}
}

func testRefusedJoins(t *testing.T) {
	ka := tenantKubeconfig(t, "wa")
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
	secret := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","type":"bootstrap.kubernetes.io/token","metadata":{"name":"bootstrap-token-exp001","namespace":"kube-system"},
"stringData":{"token-id":"exp001","token-secret":"0123456789abcdef","expiration":%q,"usage-bootstrap-authentication":"true","usage-bootstrap-signing":"true","auth-extra-groups":"system:bootstrappers:kubeadm:default-node-token"}}`,
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if out, err := tkubeApply(ka, secret); err != nil {
		t.Fatalf("create expired token: %v\n%s", err, out)
	}
	cases := []struct {
		name, token, hash, want string
	}{
		{"wrong token", "zzzzzz.0123456789abcdef", hash, `could not find a JWS signature in the cluster-info ConfigMap for token ID "zzzzzz"`},
		{"expired token", expired, hash, `could not find a JWS signature in the cluster-info ConfigMap for token ID "exp001"`},
		{"wrong CA hash", token, "sha256:" + strings.Repeat("1", 64), "none of the public keys"},
	}
	before, _ := tkube(ka, "get", "nodes", "-o", "name")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := nodeAdd(t, "wa", "--name", "wa-bad", "--token", c.token, "--discovery-token-ca-cert-hash", c.hash, "--discovery-timeout", "15s")
			if r.err == nil || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("want kubeadm's error %q:\n%s", c.want, r)
			}
			if after, _ := tkube(ka, "get", "nodes", "-o", "name"); after != before {
				t.Fatalf("nodes changed after a refused join: before %q after %q", before, after)
			}
			list := run(t, "node", "list", "wa", "--root", root)
			if strings.Contains(list.stdout, "wa-bad") {
				t.Fatalf("the refused worker is still recorded:\n%s", list.stdout)
			}
			entries, _ := os.ReadDir("/run/netns")
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
