package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/worker"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// TestNetwork checks the node tunnel and the fence on the local admin
// node: workers behind NAT (nothing on the admin side can connect to
// them) still serve logs, exec and port-forward, and tenant pods serve
// admission and conversion webhooks and an aggregated API, all through
// the tunnel, with two control-plane replicas and again after the agents
// and the tunnel servers are killed; a tenant administrator pointing a Node at admin-cluster
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
	// The admin cluster is shared with the suites that follow: leave no
	// worker and no tenant behind, whatever happened.
	t.Cleanup(func() { removeTenants(t, "na", "nb") })
	mustKube(t, "patch", "tenantcluster", "nb", "--type=merge", "-p", `{"spec":{"addons":{"tunnel":{"enabled":false}}}}`)
	waitTenantReady(t, "na")
	waitTenantReady(t, "nb")
	ka, kb := tenantKubeconfig(t, "na"), tenantKubeconfig(t, "nb")
	hook := newWebhookPKI(t)

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
		{"NetworkPolicy between pods on two nodes", func(t *testing.T) { testNetworkPolicyAcrossNodes(t, ka) }},
		{"webhooks and an aggregated API served by tenant pods", func(t *testing.T) { testWebhooks(t, ka, hook) }},
		{"again after the agents and the tunnel servers are killed", func(t *testing.T) {
			mustTkube(t, ka, "-n", "kube-system", "delete", "pods", "-l", "k8s-app="+tenantbootstrap.TunnelAgentName, "--wait=false")
			killTunnelServers(t)
			// A control-plane pod is not Ready while its tunnel container
			// restarts (so for a moment the API server has no endpoint):
			// wait until both restarted and are Ready again.
			eventually(t, 3*time.Minute, "the tunnel servers to restart and the control-plane pods to be Ready", func(ctx context.Context) error {
				out, err := kubectlIn(ctx, adminKubeconfig(), "", "get", "pods", "-l", "kubinception.dev/tenant=na,kubinception.dev/component=control-plane",
					"-o", `jsonpath={range .items[*]}{.status.containerStatuses[?(@.name=="tunnel")].restartCount} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
				if err != nil {
					return err
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 {
					return fmt.Errorf("control-plane pods (tunnel restarts, Ready): %q", out)
				}
				for _, l := range lines {
					if f := strings.Fields(l); len(f) != 2 || f[0] == "0" || f[1] != "True" {
						return fmt.Errorf("control-plane pods (tunnel restarts, Ready): %q", out)
					}
				}
				return nil
			}, func() string { return clusterState(t) })
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
			testWebhooks(t, ka, hook)
		}},
		{"a Node pointing at the admin cluster reaches nothing", func(t *testing.T) {
			testAdminProbes(t, ka)
		}},
		{"the operator's metrics: anonymous scrapes refused, a reader's token served", testOperatorMetrics},
		{"one tenant's control plane cannot connect to another's", func(t *testing.T) {
			testControlPlaneWall(t, "na", "nb")
		}},
		{"a Service of type LoadBalancer is served from the admin cluster", func(t *testing.T) {
			testLoadBalancer(t, ka)
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
// kubectl port-forward and fetches a page through it. Right after the
// tunnel restarts an attempt may meet a server whose agents are still
// reconnecting; each failed attempt is logged and a new port-forward
// tried, for up to two minutes.
func testPortForward(t *testing.T, kc string) {
	t.Helper()
	eventually(t, 2*time.Minute, "a page through kubectl port-forward", func(ctx context.Context) error {
		err := portForwardOnce(ctx, kc)
		if err != nil {
			t.Logf("port-forward attempt: %v", err)
		}
		return err
	}, func() string { return tenantState(t, kc) })
}

func portForwardOnce(ctx context.Context, kc string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "port-forward", "deploy/web", ":8080", "--address", "127.0.0.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
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
		return fmt.Errorf("kubectl port-forward did not start: %s", stderr.String())
	}
	body, err := httpGet(ctx, "http://127.0.0.1:"+p+"/")
	if err != nil {
		return fmt.Errorf("GET through port-forward: %w (kubectl: %s)", err, stderr.String())
	}
	if !strings.HasPrefix(body, "hello from web-") {
		return fmt.Errorf("through port-forward: %q", body)
	}
	return nil
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
// fence on the admin node must have refused the attempts. The metrics
// port asks for a token too (testOperatorMetrics); the fence's counters
// show the attempt was stopped on the network, before any of that.
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
		{operatorIP, strconv.Itoa(install.MetricsPort), "metrics"},
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

// testOperatorMetrics scrapes the operator's metrics from the admin node
// as Prometheus would: without a token it gets 401 or 403, with the token
// of a service account that is not bound to the metrics reader role 403,
// and with one bound to it the metrics.
func testOperatorMetrics(t *testing.T) {
	operatorIP := mustKube(t, "-n", install.Namespace, "get", "pods", "-l", "app.kubernetes.io/name="+install.Name, "-o", "jsonpath={.items[0].status.podIP}")
	if net.ParseIP(operatorIP) == nil {
		t.Fatalf("operator pod IP %q\n%s", operatorIP, clusterState(t))
	}
	url := "https://" + net.JoinHostPort(operatorIP, strconv.Itoa(install.MetricsPort)) + "/metrics"
	ns := install.Namespace
	mustKube(t, "-n", ns, "create", "serviceaccount", "e2e-metrics-scraper")
	mustKube(t, "-n", ns, "create", "serviceaccount", "e2e-metrics-stranger")
	mustKube(t, "create", "clusterrolebinding", "e2e-metrics-scraper", "--clusterrole="+install.MetricsReaderName, "--serviceaccount="+ns+":e2e-metrics-scraper")
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "delete", "clusterrolebinding", "e2e-metrics-scraper", "--ignore-not-found")
		cleanupKubectl(t, adminKubeconfig(), "-n", ns, "delete", "serviceaccount", "e2e-metrics-scraper", "e2e-metrics-stranger", "--ignore-not-found")
	})
	reader := strings.TrimSpace(mustKube(t, "-n", ns, "create", "token", "e2e-metrics-scraper", "--duration=10m"))
	stranger := strings.TrimSpace(mustKube(t, "-n", ns, "create", "token", "e2e-metrics-stranger", "--duration=10m"))

	// The certificate is the operator's self-signed one: this checks who
	// may read, not the server's identity.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
	scrape := func(ctx context.Context, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(body), err
	}
	if code, body, err := scrape(t.Context(), ""); err != nil || (code != http.StatusUnauthorized && code != http.StatusForbidden) {
		t.Errorf("anonymous scrape of %s: %d, %v, want 401 or 403:\n%.300s", url, code, err, body)
	}
	if strings.HasPrefix(url, "https://") {
		plain := "http://" + strings.TrimPrefix(url, "https://")
		if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(plain); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain http scrape of %s served metrics:\n%.300s", plain, body)
			}
		}
	}
	// RBAC and the new token may take a moment to reach the operator's
	// reviews; the stranger must be refused throughout.
	eventually(t, time.Minute, "the reader's token to be served the metrics", func(ctx context.Context) error {
		if code, body, err := scrape(ctx, stranger); err != nil || code != http.StatusForbidden {
			t.Errorf("scrape with a token not bound to %s: %d, %v, want 403:\n%.300s", install.MetricsReaderName, code, err, body)
		}
		code, body, err := scrape(ctx, reader)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
			return fmt.Errorf("scrape with the reader's token: %d:\n%.300s", code, body)
		}
		return nil
	}, func() string { return clusterState(t) })
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
`+probeAPIService("probe", "insecureSkipTLSVerify: true"))
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

// webhookPKI is the probe webhook's CA and serving certificate, made once
// per test: the webhook reads its certificate when it starts.
type webhookPKI struct{ ca, serving *pki.KeyPair }

func newWebhookPKI(t *testing.T) webhookPKI {
	t.Helper()
	ca, err := pki.NewCA("probe-webhook-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "probe-webhook", Server: true,
		DNSNames: []string{"probe-webhook", "probe-webhook.default", "probe-webhook.default.svc"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return webhookPKI{ca: ca, serving: serving}
}

// testWebhooks serves, from a tenant pod, a validating admission webhook,
// a CRD conversion webhook and an aggregated API (tinyhost webhook), and
// uses each through the tenant's API server: every call reaches the pod
// through the tunnel. Applying is idempotent, so the test can run again.
func testWebhooks(t *testing.T, kc string, hook webhookPKI) {
	t.Helper()
	ca, serving := hook.ca, hook.serving
	bundle := base64.StdEncoding.EncodeToString(ca.CertPEM)
	mustApply(t, kc, fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: probe-webhook-tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: probe-webhook, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: probe-webhook}}
  template:
    metadata: {labels: {app: probe-webhook}}
    spec:
      containers:
      - name: webhook
        image: %s
        imagePullPolicy: Never
        args: [webhook, "8443", /tls/tls.crt, /tls/tls.key, probe.kubinception.dev]
        readinessProbe: {httpGet: {path: /apis/probe.kubinception.dev/v1, port: 8443, scheme: HTTPS}, periodSeconds: 1}
        volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
      volumes: [{name: tls, secret: {secretName: probe-webhook-tls}}]
---
apiVersion: v1
kind: Service
metadata: {name: probe-webhook, namespace: default}
spec:
  selector: {app: probe-webhook}
  ports: [{port: 443, targetPort: 8443}]
`, base64.StdEncoding.EncodeToString(serving.CertPEM), base64.StdEncoding.EncodeToString(serving.KeyPEM), config(t).Images.Tinyhost()))
	mustTkube(t, kc, "rollout", "status", "deployment/probe-webhook", "--timeout=180s")
	mustApply(t, kc, fmt.Sprintf(`
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: probe-webhook}
webhooks:
- name: probe.kubinception.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  objectSelector: {matchLabels: {tinyhost/check: "true"}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  clientConfig:
    caBundle: %[1]s
    service: {name: probe-webhook, namespace: default, path: /validate}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.conv.kubinception.dev}
spec:
  group: conv.kubinception.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  - {name: v2, served: true, storage: false, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        caBundle: %[1]s
        service: {name: probe-webhook, namespace: default, path: /convert}
`, bundle)+probeAPIService("probe-webhook", "caBundle: "+bundle))
	mustTkube(t, kc, "wait", "--for=condition=Established", "crd/widgets.conv.kubinception.dev", "--timeout=60s")

	// Admission: denied and allowed, as the webhook decides.
	eventually(t, 2*time.Minute, "the validating webhook to deny a labelled ConfigMap", func(ctx context.Context) error {
		_ = exec.CommandContext(ctx, kubectl, "--kubeconfig", kc, "delete", "configmap", "probe-denied", "--ignore-not-found").Run()
		out, err := kubectlIn(ctx, kc, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe-denied, namespace: default, labels: {tinyhost/check: \"true\", tinyhost/deny: \"true\"}}\n", "create", "-f", "-")
		if err == nil {
			return fmt.Errorf("a ConfigMap the webhook denies was created: %s", out)
		}
		if !strings.Contains(out, "denied by tinyhost") {
			return fmt.Errorf("create refused without the webhook's answer: %s", strings.TrimSpace(out))
		}
		return nil
	}, func() string { return tenantState(t, kc) })
	name := fmt.Sprintf("probe-allowed-%d", time.Now().UnixNano())
	mustApply(t, kc, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: default, labels: {tinyhost/check: \"true\"}}\n", name))

	// Conversion: stored as v1, read as v2 through the webhook.
	widget := fmt.Sprintf("w-%d", time.Now().UnixNano())
	mustApply(t, kc, fmt.Sprintf("apiVersion: conv.kubinception.dev/v1\nkind: Widget\nmetadata: {name: %s, namespace: default}\nspec: {size: 3}\n", widget))
	eventually(t, 2*time.Minute, "the conversion webhook to serve v2", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "get", "widgets.v2.conv.kubinception.dev", widget, "-o", `jsonpath={.apiVersion} {.metadata.annotations.tinyhost/converted-from}`)
		if err != nil {
			return err
		}
		if out != "conv.kubinception.dev/v2 conv.kubinception.dev/v1" {
			return fmt.Errorf("read as v2: %q", out)
		}
		return nil
	}, func() string { return tenantState(t, kc) })

	// Aggregated API: available, and answering through the API server.
	eventually(t, 2*time.Minute, "the aggregated API to answer", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "get", "--raw", "/apis/probe.kubinception.dev/v1/hello")
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"hello":"probe-webhook-`) {
			return fmt.Errorf("aggregated API answered %q", out)
		}
		return nil
	}, func() string {
		out, _ := tkube(t, kc, "get", "apiservice", "v1.probe.kubinception.dev", "-o", "yaml")
		return out + tenantState(t, kc)
	})
}

// probeAPIService registers the aggregated API probe.kubinception.dev/v1
// served by the Service of that name in the default namespace; trust is
// the TLS line ("caBundle: ..." or "insecureSkipTLSVerify: true").
func probeAPIService(service, trust string) string {
	return fmt.Sprintf(`---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.probe.kubinception.dev}
spec:
  group: probe.kubinception.dev
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  %s
  service: {name: %s, namespace: default, port: 443}
`, trust, service)
}

// testLoadBalancer exposes the web Deployment with a tenant Service of
// type LoadBalancer: it gets an address, which answers HTTP from the
// admin node while the Deployment scales and a node goes; deleting the
// Service removes its load balancer from the admin cluster.
func testLoadBalancer(t *testing.T, kc string) {
	t.Helper()
	start := time.Now()
	mustApply(t, kc, `
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`)
	var ip string
	eventually(t, 2*time.Minute, "an address for the LoadBalancer Service", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "get", "service", "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
		if err != nil {
			return err
		}
		if net.ParseIP(out) == nil {
			return fmt.Errorf("ingress %q", out)
		}
		ip = out
		return nil
	}, func() string { return tenantState(t, kc) + clusterState(t) })
	t.Logf("LoadBalancer address %s after %s", ip, time.Since(start).Round(100*time.Millisecond))
	answers := func(what string, n int) {
		t.Helper()
		eventually(t, 2*time.Minute, fmt.Sprintf("%d answers from http://%s/ (%s)", n, ip, what), func(ctx context.Context) error {
			for range n {
				body, err := httpGet(ctx, "http://"+ip+"/")
				if err != nil {
					return err
				}
				if !strings.HasPrefix(body, "hello from web-") {
					return fmt.Errorf("answer %q", body)
				}
			}
			return nil
		}, func() string { return tenantState(t, kc) + clusterState(t) })
	}
	answers("two replicas", 6)
	mustTkube(t, kc, "scale", "deployment/web", "--replicas=4")
	mustTkube(t, kc, "rollout", "status", "deployment/web", "--timeout=180s")
	answers("four replicas", 8)
	nodes := names(t, kc, "get", "nodes", "-l", "!node-role.kubernetes.io/control-plane")
	last := strings.TrimPrefix(nodes[len(nodes)-1], "node/")
	if r := run(t, "node", "remove", "na", last, "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("node remove:\n%s", r)
	}
	answers("a node removed", 8)

	mustTkube(t, kc, "delete", "service", "web-lb")
	eventually(t, 2*time.Minute, "the load balancer to leave the admin cluster", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, adminKubeconfig(), "", "get", "deployments,services", "-A", "-l", "kubinception.dev/tenant=na,kubinception.dev/component=load-balancer", "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// A new connection each time: each goes through the load balancer's
	// choice of node.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// removeTenants removes the tenants' local workers and deletes the
// tenants, reporting failures as test errors. It runs from t.Cleanup,
// where the test's context has ended.
func removeTenants(t *testing.T, tenants ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kubinception := func(args ...string) {
		if r := runCmd(exec.CommandContext(ctx, bin, args...)); r.err != nil {
			t.Errorf("cleanup: kubinception %s:\n%s", strings.Join(args, " "), r)
		}
	}
	for _, tenant := range tenants {
		workers, err := (worker.Layout{Root: root}).List("default/" + tenant)
		if err != nil {
			t.Errorf("cleanup: workers of %s: %v", tenant, err)
		}
		for _, w := range workers {
			kubinception("node", "remove", tenant, w.Node, "--kubeconfig", adminKubeconfig(), "--root", root)
		}
		kubinception("delete", "cluster", tenant, "--kubeconfig", adminKubeconfig(), "--wait")
	}
}
