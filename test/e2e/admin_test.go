package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

// TestAdminCluster brings the admin cluster up once and checks it from
// the outside, in order: bad invocations fail fast before anything runs;
// up works; pods, Services and the datastore behave; a crashed supervisor
// recovers; down leaves nothing behind and a later up keeps the data.
func TestAdminCluster(t *testing.T) {
	requireE2E(t)
	t.Run("a second Kubernetes version builds", testSecondVersion)
	t.Run("bad invocations fail fast and say what to do", testBadInvocations)
	if !t.Run("up", testUp) {
		t.FailNow()
	}
	t.Run("status reports a healthy cluster", func(t *testing.T) {
		st := run(t, "admin", "status")
		if st.err != nil || !strings.Contains(st.stdout, "3 of 3 members healthy") || !strings.Contains(st.stdout, "is Ready") {
			t.Fatalf("status does not report a healthy cluster:\n%s", st)
		}
	})
	t.Run("deployment and ClusterIP service", testDeploymentAndService)
	t.Run("datastore survives a member failure", testDatastoreMemberFailure)
	t.Run("up is idempotent", testUpIdempotent)
	t.Run("up recovers after the supervisor is killed", testSupervisorCrash)
	t.Run("down leaves nothing, then up keeps data", testDownUpKeepsData)
}

// testSecondVersion builds v1.34.4 beside the default (upgrades need two
// versions) and checks each component reports the version it was built as.
// With a warm cache it only checks the cache.
func testSecondVersion(t *testing.T) {
	const version = "v1.34.4"
	r := run(t, "build", "components", "--version", version)
	if r.err != nil {
		t.Fatalf("build %s:\n%s", version, r)
	}
	bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(version)
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"kubelet": {"--version"}, "kube-apiserver": {"--version"}, "kubeadm": {"version", "-o", "short"},
	} {
		out, err := exec.Command(bins.Component(name), args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), version) {
			t.Errorf("%s %v = %q, %v; want %s", name, args, out, err, version)
		}
	}
	again := run(t, "build", "components", "--version", version)
	if again.err != nil || !strings.Contains(again.stdout, "up to date") {
		t.Fatalf("a second build was not served from the cache:\n%s", again)
	}
}

func testBadInvocations(t *testing.T) {
	t.Run("unknown version", func(t *testing.T) {
		r := run(t, "build", "components", "--version", "v1.99.0")
		if r.err == nil || !strings.Contains(r.stderr, "v1.99.0 is not supported") || !strings.Contains(r.stderr, "--version v1.35.4") {
			t.Fatalf("want a refusal naming the version and the fix:\n%s", r)
		}
		r = run(t, "admin", "up", "--version", "v1.99.0")
		if r.err == nil || !strings.Contains(r.stderr, "not supported") {
			t.Fatalf("admin up accepted v1.99.0:\n%s", r)
		}
	})
	t.Run("missing privileges", func(t *testing.T) {
		cmd := exec.Command(bin, withRoot([]string{"admin", "up"})...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		r := runCmd(cmd)
		if r.err == nil || !strings.Contains(r.stderr, "must run as root") || !strings.Contains(r.stderr, "sudo") {
			t.Fatalf("want a refusal saying root is needed:\n%s", r)
		}
	})
	t.Run("port in use", func(t *testing.T) {
		port := admincluster.DefaultPorts.Scheduler
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("cannot hold port %d for the test: %v", port, err)
		}
		defer l.Close()
		r := run(t, "admin", "up")
		want := fmt.Sprintf("port %d, needed by kube-scheduler, is in use by pid %d", port, os.Getpid())
		if r.err == nil || !strings.Contains(r.stderr, want) {
			t.Fatalf("want an error containing %q:\n%s", want, r)
		}
		if _, err := os.Stat(filepath.Join(root, "run", "supervisor.pid")); err == nil {
			t.Fatalf("a refused up started the supervisor")
		}
	})
}

func testUp(t *testing.T) {
	start := time.Now()
	r := run(t, "admin", "up")
	if r.err != nil {
		t.Fatalf("admin up failed:\n%s", r)
	}
	t.Logf("admin up took %s:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)
	out := mustKube(t, "get", "node", config(t).NodeName, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
	if out != "True" {
		t.Fatalf("node Ready = %q after up\n%s", out, clusterState(t))
	}
}

func testDeploymentAndService(t *testing.T) {
	c := config(t)
	ns := "e2e-web"
	mustKube(t, "delete", "namespace", ns, "--wait=true", "--ignore-not-found")
	mustKube(t, "create", "namespace", ns)
	t.Cleanup(func() { cleanupKubectl(t, adminKubeconfig(), "delete", "namespace", ns, "--wait=false") })
	mustApply(t, adminKubeconfig(), fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: %[2]s
        imagePullPolicy: Never
        args: [serve, "8080"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns, c.Images.Tinyhost()))
	mustKube(t, "-n", ns, "rollout", "status", "deployment/web", "--timeout=180s")
	eventually(t, 2*time.Minute, "2 ready endpoints behind the Service", func(ctx context.Context) error {
		out, err := kube(t, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}")
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n != 2 {
			return fmt.Errorf("%d ready endpoints: %q", n, out)
		}
		return nil
	})
	ip := strings.TrimSpace(mustKube(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))
	if ip == "" {
		t.Fatal("the Service has no ClusterIP")
	}

	// From another pod, through the Service's ClusterIP.
	url := fmt.Sprintf("http://%s/", ip)
	mustKube(t, "-n", ns, "run", "client", "--image="+c.Images.Tinyhost(), "--image-pull-policy=Never", "--restart=Never", "--command", "--",
		"/usr/local/bin/tinyhost", "get", url, "60")
	waitPodSucceeded(t, adminKubeconfig(), ns, "client", "reach the Service at "+url)
	logs := mustKube(t, "-n", ns, "logs", "client")
	if !strings.HasPrefix(logs, "hello from web-") {
		t.Fatalf("client pod got %q through the Service, want a greeting from a web replica", logs)
	}
	// kubectl exec reaches the kubelet through the API server.
	out := mustKube(t, "-n", ns, "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", url, "10")
	if !strings.HasPrefix(out, "hello from web-") {
		t.Fatalf("exec in a web pod got %q", out)
	}
}

// waitPodSucceeded waits for a run-to-completion pod to succeed, and fails
// at once, with its logs, if it fails.
func waitPodSucceeded(t *testing.T, kubeconfig, ns, pod, what string) {
	t.Helper()
	eventually(t, 3*time.Minute, pod+" to "+what, func(ctx context.Context) error {
		phase, err := kubectlIn(ctx, kubeconfig, "", "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if err != nil {
			return err
		}
		switch phase {
		case "Succeeded":
			return nil
		case "Failed":
			logs, err := kubectlIn(ctx, kubeconfig, "", "-n", ns, "logs", pod)
			return stopWaiting("%s failed to %s: %s (%v)", pod, what, logs, err)
		}
		return fmt.Errorf("phase %q", phase)
	}, func() string { return tenantState(t, kubeconfig) })
}

// datastoreClient connects to the datastore with the root credential Up
// stored.
func datastoreClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cl := &admincluster.Cluster{Config: config(t)}
	creds, err := cl.DatastoreCredentials()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := datastore.Connect(creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// memberPID finds the etcd process of a datastore member, or 0.
func memberPID(t *testing.T, name string) int {
	t.Helper()
	return onePID(t, name, func(p hostproc.Process) bool {
		return p.Command() == "etcd" && slices.Contains(p.Args, "--name="+name) && p.NamesPath(root)
	})
}

func testDatastoreMemberFailure(t *testing.T) {
	cli := datastoreClient(t)
	ctx := t.Context()
	members := healthyMembers(t, cli)
	if len(members) != 3 {
		t.Fatalf("want 3 healthy members, have %+v", members)
	}
	// The root credential stored for the operator works.
	secret := mustKube(t, "-n", admincluster.SystemNamespace, "get", "secret", admincluster.DatastoreRootSecret, "-o", "jsonpath={.data.username}")
	if secret == "" {
		t.Fatalf("secret %s/%s holds no username", admincluster.SystemNamespace, admincluster.DatastoreRootSecret)
	}
	if st, err := cli.AuthStatus(ctx); err != nil || !st.Enabled {
		t.Fatalf("etcd authentication is not enabled: %v %+v", err, st)
	}

	// Freeze one member so it is certainly unavailable while the writes
	// happen, then kill it; the kubelet restarts it.
	victim := "datastore-1"
	pid := memberPID(t, victim)
	if pid == 0 {
		t.Fatalf("no etcd process for %s", victim)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped %s (pid %d)", victim, pid)

	// Writes go on with two of three members.
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("/e2e/outage/%d", i)
		eventually(t, 30*time.Second, "a write with one member down", func(ctx context.Context) error {
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := cli.Put(wctx, key, "written while "+victim+" was down")
			return err
		})
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("20 writes succeeded with %s down; killed it", victim)

	// The member comes back (the kubelet restarts it) and catches up: a
	// serializable read from it alone sees the writes it missed.
	var endpoint string
	for _, m := range members {
		if m.Name == victim {
			endpoint = m.Endpoint
		}
	}
	if endpoint == "" {
		t.Fatalf("no endpoint for %s among %+v", victim, members)
	}
	cl := &admincluster.Cluster{Config: config(t)}
	creds, err := cl.DatastoreCredentials()
	if err != nil {
		t.Fatal(err)
	}
	creds.Endpoints = []string{endpoint}
	single, err := datastore.Connect(creds)
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	eventually(t, 3*time.Minute, victim+" to restart and catch up", func(ctx context.Context) error {
		if p := memberPID(t, victim); p == 0 || p == pid {
			return fmt.Errorf("%s has not restarted", victim)
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := single.Get(rctx, "/e2e/outage/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != 20 {
			return fmt.Errorf("%s holds %d of the 20 keys written while it was down", victim, resp.Count)
		}
		return nil
	})
	if n := len(healthyMembers(t, cli)); n != 3 {
		t.Fatalf("%d healthy members after the restart, want 3", n)
	}
}

func healthyMembers(t *testing.T, cli *clientv3.Client) []datastore.MemberHealth {
	t.Helper()
	var healthy []datastore.MemberHealth
	eventually(t, 2*time.Minute, "3 healthy datastore members", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		members, err := datastore.Health(ctx, cli)
		if err != nil {
			return err
		}
		healthy = healthy[:0]
		for _, m := range members {
			if m.Healthy {
				healthy = append(healthy, m)
			}
		}
		if len(healthy) != 3 {
			return fmt.Errorf("members: %+v", members)
		}
		return nil
	})
	return healthy
}

// adminAPIServerPID is the process serving the admin API server's port, to
// tell whether it was restarted. The process, not the API server's mirror
// pod: the kubelet recreates mirror pods after a datastore member's
// restart, and a moment without one says nothing about the API server.
func adminAPIServerPID(t *testing.T) int {
	t.Helper()
	c := config(t)
	var pid int
	eventually(t, time.Minute, "a process listening on the admin API server's port", func(context.Context) error {
		if pid = hostproc.ListenerPID(c.NodeIP, c.Ports.APIServer); pid == 0 {
			return fmt.Errorf("nothing listens on %s:%d", c.NodeIP, c.Ports.APIServer)
		}
		return nil
	})
	return pid
}

func testUpIdempotent(t *testing.T) {
	before := adminAPIServerPID(t)
	r := run(t, "admin", "up")
	if r.err != nil {
		t.Fatalf("second up failed:\n%s", r)
	}
	t.Logf("second up:\n%s", r.stdout)
	if strings.Contains(r.stdout, "imported") {
		t.Errorf("second up imported images again:\n%s", r.stdout)
	}
	if after := adminAPIServerPID(t); after != before {
		t.Fatalf("second up restarted the API server (pid %d, now %d)\n%s", before, after, clusterState(t))
	}
}

func testSupervisorCrash(t *testing.T) {
	pidData, err := os.ReadFile(filepath.Join(root, "run", "supervisor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err != nil || pid <= 1 {
		t.Fatalf("supervisor pid file holds %q: %v", pidData, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill supervisor %d: %v", pid, err)
	}
	r := run(t, "admin", "up")
	if r.err != nil {
		t.Fatalf("up after a killed supervisor failed:\n%s", r)
	}
	t.Logf("up after a killed supervisor:\n%s", r.stdout)
	st := run(t, "admin", "status")
	if st.err != nil {
		t.Fatalf("cluster unhealthy after recovering:\n%s", st)
	}
}

func testDownUpKeepsData(t *testing.T) {
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, err := cli.Put(ctx, "/e2e/persist", "kept")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	mustKube(t, "create", "configmap", "e2e-persist", "--from-literal=k=kept")
	cli.Close()

	r := run(t, "admin", "down")
	if r.err != nil {
		t.Fatalf("down failed:\n%s", r)
	}
	requireNothingLeft(t)
	st := run(t, "admin", "status")
	if st.err == nil || !strings.Contains(st.stdout, "is down") {
		t.Fatalf("status after down does not say the cluster is down:\n%s", st)
	}

	r = run(t, "admin", "up")
	if r.err != nil {
		t.Fatalf("up after down failed:\n%s", r)
	}
	cli = datastoreClient(t)
	eventually(t, time.Minute, "the datastore key written before down", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, "/e2e/persist")
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
			return fmt.Errorf("got %v", resp.Kvs)
		}
		return nil
	})
	if out := mustKube(t, "get", "configmap", "e2e-persist", "-o", "jsonpath={.data.k}"); out != "kept" {
		t.Fatalf("admin cluster object lost across down/up: %q", out)
	}
	// The cluster stays up for the next tests; TestWorkers ends with the
	// teardown of a cluster that also has workers.
}
