package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/frontdoor"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/worker"
)

// frontDoorDomain and frontDoorPort are what `kubinception install` sets
// up on the local admin cluster.
var (
	frontDoorDomain = install.DefaultFrontDoor().Domain
	frontDoorPort   = install.DefaultFrontDoor().ClientPort()
)

// TestFrontDoor exposes two tenants through the one front-door port: both
// answer by name, an unknown name and a client without one are refused,
// the front door reaches control planes and nothing else of the admin
// cluster, a replica restarting loses no request, a worker joins through
// it and runs pods (logs and exec through the tunnel, whose agents also
// come in through it). Meanwhile the second tenant hibernates on request
// with no pod left, wakes on the first kubectl request with its objects
// intact, hibernates again when idle, and on schedule.
func TestFrontDoor(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	mustKube(t, "-n", frontdoor.Namespace, "rollout", "status", "deployment/"+frontdoor.Name, "--timeout=3m")
	t.Cleanup(func() {
		removeTenants(t, "fda", "fdb")
		// The test's context is over: the names go from /etc/hosts with
		// a context of their own.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if r := runCmd(exec.CommandContext(ctx, bin, "frontdoor", "hosts", "--kubeconfig", adminKubeconfig())); r.err != nil {
			t.Errorf("cleanup: frontdoor hosts:\n%s", r)
		}
	})
	mustApply(t, adminKubeconfig(), `
apiVersion: kubinception.dev/v1alpha1
kind: TenantCluster
metadata: {name: fda, namespace: default}
spec: {exposure: {type: FrontDoor}}
---
apiVersion: kubinception.dev/v1alpha1
kind: TenantCluster
metadata: {name: fdb, namespace: default}
spec:
  exposure: {type: FrontDoor}
  hibernation: {enabled: true, idleAfterMinutes: 1}
`)
	a, b := waitTenantReady(t, "fda"), waitTenantReady(t, "fdb")
	for _, tc := range []*kv1.TenantCluster{a, b} {
		if want := fmt.Sprintf("https://%s.%s:%d", tc.Name, frontDoorDomain, frontDoorPort); tc.Status.Endpoint != want {
			t.Fatalf("tenant %s endpoint %q, want %q", tc.Name, tc.Status.Endpoint, want)
		}
	}
	if r := run(t, "frontdoor", "hosts", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("frontdoor hosts:\n%s", r)
	}
	ka, kb := tenantKubeconfig(t, "fda"), tenantKubeconfig(t, "fdb")
	nodeIP := mustKube(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	door := net.JoinHostPort(nodeIP, fmt.Sprint(frontDoorPort))

	t.Run("two tenants through one port by name", func(t *testing.T) {
		for _, kc := range []string{ka, kb} {
			if server := mustTkube(t, kc, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"); !strings.HasSuffix(server, fmt.Sprintf(".%s:%d", frontDoorDomain, frontDoorPort)) {
				t.Fatalf("kubeconfig server %q is not a front-door name", server)
			}
		}
		mustTkube(t, ka, "create", "namespace", "only-in-fda")
		mustTkube(t, kb, "create", "namespace", "only-in-fdb")
		if out, err := tkube(t, kb, "get", "namespace", "only-in-fda"); err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("fdb answers for fda's namespace: %v\n%s", err, out)
		}
		mustTkube(t, ka, "get", "namespace", "only-in-fda")
	})

	t.Run("unknown names are refused", func(t *testing.T) {
		for _, name := range []string{"fda." + frontDoorDomain, "nobody." + frontDoorDomain, ""} {
			err := tlsHello(t.Context(), door, name)
			if known := strings.HasPrefix(name, "fda."); known != (err == nil) {
				t.Fatalf("TLS handshake through the front door with server name %q: %v (want success only for a tenant's name)", name, err)
			}
		}
	})

	t.Run("the front door reaches control planes only", func(t *testing.T) {
		uid := strings.Fields(mustKube(t, "-n", frontdoor.Namespace, "get", "pods", "-l", "app.kubernetes.io/name="+frontdoor.Name,
			"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.uid}"))
		if len(uid) == 0 {
			t.Fatalf("no running front-door pod\n%s", clusterState(t))
		}
		pid := podPID(t, uid[0])
		svcIP := mustKube(t, "-n", "default", "get", "service", "fda-apiserver", "-o", "jsonpath={.spec.clusterIP}")
		if err := dialFrom(t.Context(), pid, net.JoinHostPort(svcIP, "6443")); err != nil {
			t.Fatalf("the front door cannot reach fda's API server: %v", err)
		}
		gw, err := url.Parse(gatewayEndpoint(t))
		if err != nil {
			t.Fatal(err)
		}
		operatorIP := mustKube(t, "-n", install.Namespace, "get", "pods", "-l", "app.kubernetes.io/name="+install.Name, "-o", "jsonpath={.items[0].status.podIP}")
		for _, addr := range []string{gw.Host, net.JoinHostPort(operatorIP, fmt.Sprint(install.MetricsPort)), net.JoinHostPort(nodeIP, "10250")} {
			if err := dialFrom(t.Context(), pid, addr); err == nil {
				t.Errorf("the front door reached %s: its NetworkPolicy should allow control planes and the API server port only", addr)
			}
		}
	})

	t.Run("a replica restarting loses no request", func(t *testing.T) {
		pods := strings.Fields(mustKube(t, "-n", frontdoor.Namespace, "get", "pods", "-l", "app.kubernetes.io/name="+frontdoor.Name, "-o", "jsonpath={.items[*].metadata.name}"))
		if len(pods) < 2 {
			t.Fatalf("front-door pods %v, want at least 2", pods)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var ok, failed atomic.Int64
		var failures sync.Map
		var wg sync.WaitGroup
		for _, kc := range []string{ka, kb} {
			wg.Go(func() {
				for ctx.Err() == nil {
					out, err := kubectlIn(ctx, kc, "", "get", "--raw", "/version")
					switch {
					case err == nil:
						ok.Add(1)
					case ctx.Err() == nil:
						failed.Add(1)
						failures.Store(time.Now().Format(time.RFC3339Nano), fmt.Sprintf("%v: %s", err, out))
					}
				}
			})
		}
		time.Sleep(2 * time.Second)
		mustKube(t, "-n", frontdoor.Namespace, "delete", "pod", pods[0], "--wait=true")
		mustKube(t, "-n", frontdoor.Namespace, "rollout", "status", "deployment/"+frontdoor.Name, "--timeout=2m")
		time.Sleep(2 * time.Second)
		cancel()
		wg.Wait()
		var lines []string
		failures.Range(func(k, v any) bool { lines = append(lines, fmt.Sprintf("%s %s", k, v)); return true })
		t.Logf("%d requests answered while a front-door replica restarted, %d failed", ok.Load(), failed.Load())
		if failed.Load() > 0 || ok.Load() < 10 {
			t.Fatalf("%d requests failed, %d answered, while replica %s restarted:\n%s", failed.Load(), ok.Load(), pods[0], strings.Join(lines, "\n"))
		}
	})

	t.Run("together", func(t *testing.T) {
		t.Run("a worker joins through the front door", func(t *testing.T) {
			t.Parallel()
			nodeAdd(t, "fda")
			nodesReady(t, ka, 1)
			workers, err := (worker.Layout{Root: root}).List("default/fda")
			if err != nil || len(workers) != 1 {
				t.Fatalf("workers of fda: %v, %v", workers, err)
			}
			kubelet, err := os.ReadFile(workers[0].Path("etc-kubernetes", "kubelet.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("server: https://fda.%s:%d", frontDoorDomain, frontDoorPort); !strings.Contains(string(kubelet), want) {
				t.Fatalf("the worker's kubelet.conf does not use the front door (%s):\n%s", want, kubelet)
			}
			testWorkloads(t, ka, 1)
		})
		t.Run("hibernation", func(t *testing.T) {
			t.Parallel()
			testHibernation(t, kb)
		})
	})
}

// tlsHello completes a TLS handshake through the front door with a server
// name (none when empty); the certificate is not checked: whether the
// front door let the connection through is the question.
func tlsHello(ctx context.Context, door, serverName string) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{ServerName: serverName, InsecureSkipVerify: true}} //nolint:gosec // only whether a handshake completes
	if serverName == "" {
		d.Config.ServerName = ""
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", door)
	if err != nil {
		return err
	}
	return c.Close()
}

// testHibernation drives tenant fdb (idle after 1 minute) through
// hibernation: on request, woken by a request, idle, and on schedule.
func testHibernation(t *testing.T, kb string) {
	c := adminClient(t)
	hibernation := func(ctx context.Context) (*kv1.TenantCluster, error) { return getTenant(ctx, c, "fdb") }
	waitState := func(what string, timeout time.Duration, ok func(tc *kv1.TenantCluster) bool) *kv1.TenantCluster {
		t.Helper()
		var tc *kv1.TenantCluster
		eventually(t, timeout, what, func(ctx context.Context) error {
			var err error
			if tc, err = hibernation(ctx); err != nil {
				return err
			}
			if !ok(tc) {
				return fmt.Errorf("hibernation %+v, conditions %+v", tc.Status.Hibernation, tc.Status.Conditions)
			}
			return nil
		})
		return tc
	}
	noPods := func() {
		t.Helper()
		eventually(t, 2*time.Minute, "no pod of fdb in the admin cluster", func(ctx context.Context) error {
			out, err := kubectlIn(ctx, adminKubeconfig(), "", "get", "pods", "-A", "-l", "kubinception.dev/tenant=fdb", "-o", "name")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("pods: %s", out)
			}
			return nil
		})
	}

	if r := run(t, "hibernate", "fdb", "--wait", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("hibernate fdb:\n%s\n%s", r, clusterState(t))
	}
	tc := waitState("fdb hibernated on request", time.Minute, func(tc *kv1.TenantCluster) bool {
		return tc.Status.Hibernation.Hibernated && tc.Status.Hibernation.Reason == "Requested"
	})
	if c := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionReady); c == nil || c.Reason != kv1.ReasonHibernated {
		t.Fatalf("Ready of a hibernated tenant: %+v", c)
	}
	noPods()

	// The first request wakes it, and is answered. The front door passes
	// TLS through, so the request's handshake lasts as long as the wake:
	// it is sent by a client that allows that (kubectl gives up on a
	// handshake after 10 s, which a loaded machine can reach), then kubectl
	// reads the same through the awake tenant.
	start := time.Now()
	out, err := getThroughWake(kb, "/api/v1/namespaces/only-in-fdb", 2*time.Minute)
	wake := time.Since(start)
	if err != nil || !strings.Contains(out, `"name":"only-in-fdb"`) {
		t.Fatalf("GET of a namespace of the hibernated fdb (%s): %v\n%s\n%s", wake, err, out, clusterState(t))
	}
	t.Logf("first request to the hibernated tenant answered in %s", wake.Round(time.Millisecond))
	if out := mustTkube(t, kb, "get", "namespaces", "-o", "name"); !strings.Contains(out, "namespace/only-in-fdb") {
		t.Fatalf("kubectl get namespaces against the woken fdb:\n%s", out)
	}
	tc = waitState("fdb awake after a request", time.Minute, func(tc *kv1.TenantCluster) bool {
		return !tc.Status.Hibernation.Hibernated && tc.Status.Hibernation.Reason == "Request"
	})

	// No request for a minute: asleep again.
	tc = waitState("fdb hibernated when idle", 3*time.Minute, func(tc *kv1.TenantCluster) bool {
		return tc.Status.Hibernation.Hibernated && tc.Status.Hibernation.Reason == "Idle"
	})
	if last := tc.Status.Hibernation.LastActivity; last == nil || tc.Status.Hibernation.Since.Sub(last.Time) < time.Minute {
		t.Fatalf("hibernated for idleness at %v, last activity %v: less than the minute asked", tc.Status.Hibernation.Since, last)
	}
	noPods()

	// On schedule: the next whole minute at least 30 seconds away.
	at := time.Now().UTC().Add(30 * time.Second).Truncate(time.Minute).Add(time.Minute)
	mustKube(t, "patch", "tenantcluster", "fdb", "--type=merge", "-p",
		fmt.Sprintf(`{"spec":{"hibernation":{"idleAfterMinutes":0,"schedule":"%d %d * * *"}}}`, at.Minute(), at.Hour()))
	if r := run(t, "wake", "fdb", "--wait", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("wake fdb:\n%s\n%s", r, clusterState(t))
	}
	tc = waitState("fdb hibernated on schedule", 3*time.Minute, func(tc *kv1.TenantCluster) bool {
		return tc.Status.Hibernation.Hibernated && tc.Status.Hibernation.Reason == "Schedule"
	})
	if late := tc.Status.Hibernation.Since.Sub(at); late < 0 || late > 15*time.Second {
		t.Fatalf("scheduled for %s, hibernated at %s (%s late)", at, tc.Status.Hibernation.Since.Time, late)
	}
	t.Logf("scheduled hibernation at %s happened %s after", at.Format(time.TimeOnly), tc.Status.Hibernation.Since.Sub(at).Round(time.Millisecond))
}

// getThroughWake sends one GET with the kubeconfig's credentials, allowing
// the TLS handshake to last up to timeout (client-go's transports allow 10
// s), and returns the body of a 200 answer.
func getThroughWake(kubeconfig, path string, timeout time.Duration) (string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return "", err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, TLSHandshakeTimeout: timeout, ForceAttemptHTTP2: true}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		return "", err
	}
	if cfg.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("status %s", resp.Status)
	}
	return string(body), nil
}
