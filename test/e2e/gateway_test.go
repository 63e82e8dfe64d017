package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

// The tenants of the gateway tests: gw-a has a small quota and compacts
// every 10 seconds (so a continue token expires within the test), gw-b is its
// neighbour with the defaults.
const gatewayTenants = `
apiVersion: kubinception.dev/v1alpha1
kind: TenantCluster
metadata: {name: gw-a, namespace: default}
spec:
  datastore: {quotaBytes: 20Mi}
  controlPlane: {extraArgs: ["--etcd-compaction-interval=10s"]}
---
apiVersion: kubinception.dev/v1alpha1
kind: TenantCluster
metadata: {name: gw-b, namespace: default}
spec: {}
`

func TestDatastoreGateway(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "-n", "default", "delete", "tenantclusters", "gw-a", "gw-b", "--ignore-not-found", "--timeout=5m")
	})
	mustApply(t, adminKubeconfig(), gatewayTenants)
	waitTenantReady(t, "gw-a")
	waitTenantReady(t, "gw-b")

	t.Run("tenant certificates open no datastore member", testMembersRefuseTenants)
	t.Run("through the gateway a tenant reaches only its own keys", testGatewayConfines)
	t.Run("quota: database space exceeded, delete, write again; the neighbour writes throughout", testQuota)
	t.Run("usage in status equals a direct count", testUsageMatches)
	t.Run("a list continue token expires after compaction", testContinueExpires)
	t.Run("a gateway killed during a write loop loses nothing", testGatewayKilled)
}

// tenantPKI is the tenant's PKI Secret: its datastore client certificate
// (issued by the gateway's CA) and that CA.
func tenantPKI(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := adminClient(t).Get(t.Context(), types.NamespacedName{Namespace: "default", Name: controlplane.PKISecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{controlplane.FileDatastoreClient, controlplane.FileDatastoreClientKey, controlplane.FileDatastoreCA} {
		if len(s.Data[k]) == 0 {
			t.Fatalf("PKI Secret of %s lacks %s", name, k)
		}
	}
	return s.Data
}

func tlsCert(t *testing.T, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(t *testing.T, pemFile string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", pemFile)
	}
	return p
}

// etcdStatus asks one endpoint for its status with the given TLS
// configuration.
func etcdStatus(ctx context.Context, endpoint string, cfg *tls.Config) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cli.Status(sctx, endpoint)
	return err
}

// certificateRefused says nothing when the server at endpoint refuses the
// client certificate of cfg with a TLS alert, and what happened otherwise.
// Under TLS 1.3 the client's handshake ends before the server has checked
// the client's certificate: the refusal is the alert the first read gets.
func certificateRefused(endpoint string, cfg *tls.Config) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", u.Host, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "certificate") {
			return nil
		}
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	switch {
	case err == nil:
		return fmt.Errorf("the server accepted the certificate and sent data")
	case strings.Contains(err.Error(), "certificate"):
		return nil
	}
	return fmt.Errorf("no certificate refusal, the read ended with: %w", err)
}

// peerMembers asks a member's peer port for the member list, as a peer
// would.
func peerMembers(ctx context.Context, endpoint string, cfg *tls.Config) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/members", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

func testMembersRefuseTenants(t *testing.T) {
	cfg := config(t)
	dir := cfg.DatastorePKIDir()
	pki := tenantPKI(t, "gw-a")
	tenant := tlsCert(t, pki[controlplane.FileDatastoreClient], pki[controlplane.FileDatastoreClientKey])
	root := tlsCert(t, mustRead(t, filepath.Join(dir, "root.crt")), mustRead(t, filepath.Join(dir, "root.key")))
	member := tlsCert(t, mustRead(t, filepath.Join(dir, "datastore-0-peer.crt")), mustRead(t, filepath.Join(dir, "datastore-0-peer.key")))
	clientCAs, peerCAs := pool(t, filepath.Join(dir, "ca.crt")), pool(t, filepath.Join(dir, "peer-ca.crt"))

	for _, ep := range cfg.DatastoreEndpoints() {
		// The root credential answers, so a refusal below is about the
		// certificate, not an unreachable member.
		if err := etcdStatus(t.Context(), ep, &tls.Config{RootCAs: clientCAs, Certificates: []tls.Certificate{root}}); err != nil {
			t.Fatalf("the root certificate is refused at %s: %v", ep, err)
		}
		if err := certificateRefused(ep, &tls.Config{RootCAs: clientCAs, Certificates: []tls.Certificate{tenant}, NextProtos: []string{"h2"}}); err != nil {
			t.Errorf("gw-a's certificate at the member %s: %v", ep, err)
		}
	}
	for _, ep := range cfg.DatastorePeerEndpoints() {
		if err := peerMembers(t.Context(), ep, &tls.Config{RootCAs: peerCAs, Certificates: []tls.Certificate{member}}); err != nil {
			t.Fatalf("a member's own peer certificate is refused at %s: %v", ep, err)
		}
		for name, cert := range map[string]tls.Certificate{"gw-a's": tenant, "the root": root} {
			// The tenant's certificate does not chain to the peer CA, so
			// the member refuses the handshake or the request.
			if err := peerMembers(t.Context(), ep, &tls.Config{RootCAs: peerCAs, Certificates: []tls.Certificate{cert}}); err == nil {
				t.Errorf("%s certificate is accepted on the peer port %s", name, ep)
			}
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gatewayEndpoint is the default Datastore's gateway, as tenants reach it.
func gatewayEndpoint(t *testing.T) string {
	t.Helper()
	ds := &kv1.Datastore{}
	if err := adminClient(t).Get(t.Context(), types.NamespacedName{Name: "default"}, ds); err != nil {
		t.Fatal(err)
	}
	if ds.Status.Gateway.Endpoint == "" || ds.Status.Gateway.ReadyReplicas < 1 {
		t.Fatalf("the default Datastore's gateway is not serving: %+v", ds.Status)
	}
	return ds.Status.Gateway.Endpoint
}

// gatewayClient connects to the gateway with the tenant's own datastore
// certificate, as its API server does.
func gatewayClient(t *testing.T, name string) *clientv3.Client {
	t.Helper()
	pki := tenantPKI(t, name)
	cli, err := datastore.Connect(datastore.Credentials{Endpoints: []string{gatewayEndpoint(t)}, CAPEM: pki[controlplane.FileDatastoreCA],
		CertPEM: pki[controlplane.FileDatastoreClient], KeyPEM: pki[controlplane.FileDatastoreClientKey]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func testGatewayConfines(t *testing.T) {
	a, b := waitTenantReady(t, "gw-a"), waitTenantReady(t, "gw-b")
	ca, root := gatewayClient(t, "gw-a"), datastoreClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tb := tenancyOf(t, b)
	bBefore, err := root.Get(ctx, tb.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || bBefore.Count == 0 {
		t.Fatalf("gw-b has no keys to protect: %v %v", bBefore, err)
	}
	own, err := ca.Get(ctx, "/registry/namespaces/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || own.Count == 0 {
		t.Fatalf("gw-a cannot read its own namespaces through the gateway: %v %v", own, err)
	}
	// Everything gw-a sees is its own: the whole keyspace through the
	// gateway is exactly gw-a's prefix in the datastore.
	all, err := ca.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	ta := tenancyOf(t, a)
	direct, err := root.Get(ctx, ta.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if all.Count == 0 || math.Abs(float64(all.Count-direct.Count)) > float64(direct.Count)/10 {
		t.Fatalf("gw-a sees %d keys through the gateway; its prefix holds %d", all.Count, direct.Count)
	}
	// Naming gw-b's keys writes under gw-a's own prefix.
	if _, err := ca.Put(ctx, tb.Prefix+"/registry/secrets/default/evil", "x"); err != nil && !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("put naming gw-b's prefix: %v", err)
	}
	if got, err := root.Get(ctx, tb.Prefix+"/registry/secrets/default/evil"); err != nil || got.Count != 0 {
		t.Fatalf("gw-a wrote into gw-b's prefix: %v %v", got, err)
	}
	if _, err := ca.Delete(ctx, tb.Prefix, clientv3.WithPrefix()); err != nil && !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("delete naming gw-b's prefix: %v", err)
	}
	bAfter, err := root.Get(ctx, tb.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || bAfter.Count < bBefore.Count {
		t.Fatalf("gw-b's keys went from %d to %v (%v) after gw-a's attempts", bBefore.Count, bAfter, err)
	}
	refused := map[string]func() error{
		"list etcd users": func() error { _, err := ca.UserList(ctx); return err },
		"list members":    func() error { _, err := ca.MemberList(ctx); return err },
		// A snapshot is a stream: its refusal arrives with the first read.
		"snapshot": func() error {
			rc, err := ca.Snapshot(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		},
		"defragment": func() error { _, err := ca.Defragment(ctx, gatewayEndpoint(t)); return err },
		// A named alarm: the client turns an empty one into a list and
		// disarms nothing when there is no alarm.
		"disarm the NOSPACE alarm": func() error {
			_, err := ca.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: etcdserverpb.AlarmType_NOSPACE})
			return err
		},
	}
	for what, op := range refused {
		if err := op(); err == nil {
			t.Errorf("gw-a may %s through the gateway", what)
		}
	}
}

// configMapOf is a ConfigMap manifest with size bytes of data.
func configMapOf(namespace, name string, size int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {blob: %q}\n",
		name, namespace, strings.Repeat("q", size))
}

func applyIn(ctx context.Context, kubeconfig, manifest string) error {
	_, err := kubectlIn(ctx, kubeconfig, manifest, "create", "-f", "-")
	return err
}

func testQuota(t *testing.T) {
	ka, kb := tenantKubeconfig(t, "gw-a"), tenantKubeconfig(t, "gw-b")
	mustTkube(t, ka, "create", "namespace", "fill")
	mustTkube(t, kb, "create", "namespace", "neighbour")
	const blob = 512 << 10
	var created []string
	var full error
	for i := 0; i < 80 && full == nil; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
		name := fmt.Sprintf("fill-%d", i)
		err := applyIn(ctx, ka, configMapOf("fill", name, blob))
		cancel()
		switch {
		case err == nil:
			created = append(created, name)
		case strings.Contains(err.Error(), "database space exceeded"):
			full = err
		default:
			t.Fatalf("creating %s: %v", name, err)
		}
		// The neighbour writes normally throughout.
		if _, err := tkube(t, kb, "-n", "neighbour", "create", "configmap", fmt.Sprintf("n-%d", i), "--from-literal=k=v"); err != nil {
			t.Fatalf("gw-b cannot write while gw-a fills its quota: %v", err)
		}
	}
	if full == nil {
		t.Fatalf("gw-a wrote %d ConfigMaps of %d KiB past a 20Mi quota without an error", len(created), blob>>10)
	}
	if len(created) < 20 {
		t.Fatalf("gw-a was refused after only %d ConfigMaps of %d KiB under a 20Mi quota: %v", len(created), blob>>10, full)
	}
	t.Logf("refused after %d ConfigMaps: %v", len(created), full)
	alarms, err := datastoreClient(t).AlarmList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) > 0 {
		t.Fatalf("the datastore raised alarms: %v", alarms.Alarms)
	}
	c := adminClient(t)
	eventually(t, 2*time.Minute, "gw-a's status to report its quota exhausted", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, "gw-a")
		if err != nil {
			return err
		}
		q := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionQuotaAvailable)
		if q == nil || q.Status != metav1.ConditionFalse {
			return fmt.Errorf("QuotaAvailable = %+v, usage %s", q, tc.Status.Datastore.Usage)
		}
		return nil
	})
	// Deletes pass at the quota, and free room for new writes.
	for _, name := range created[len(created)-6:] {
		mustTkube(t, ka, "-n", "fill", "delete", "configmap", name)
	}
	eventually(t, 2*time.Minute, "gw-a to write again after deleting", func(ctx context.Context) error {
		return applyIn(ctx, ka, configMapOf("fill", "after-delete", blob))
	})
}

func testUsageMatches(t *testing.T) {
	a := waitTenantReady(t, "gw-a")
	tn := tenancyOf(t, a)
	root, ca := datastoreClient(t), gatewayClient(t, "gw-a")
	c := adminClient(t)
	// Keys on a short lease through the gateway: counted while they live,
	// uncounted once the lease expires.
	lease, err := ca.Grant(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := ca.Put(t.Context(), fmt.Sprintf("/e2e-leased/%03d", i), strings.Repeat("l", 1024), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatalf("put with a lease through the gateway: %v", err)
		}
	}
	matches := func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, "gw-a")
		if err != nil {
			return err
		}
		u, err := datastore.TenantUsage(ctx, root, tn)
		if err != nil {
			return err
		}
		got := tc.Status.Datastore.UsedBytes
		if math.Abs(float64(got-u.Bytes)) > float64(u.Bytes)/100 {
			return fmt.Errorf("status says %d bytes, the prefix holds %d (%d keys)", got, u.Bytes, u.Keys)
		}
		return nil
	}
	// Inside the tenant, the API server's own storage-size metric reports
	// the tenant's usage: the gateway answers its status calls with it.
	ka := tenantKubeconfig(t, "gw-a")
	eventually(t, 3*time.Minute, "gw-a's apiserver_storage_size_bytes to report its usage", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, ka, "", "get", "--raw", "/metrics")
		if err != nil {
			return err
		}
		metric, err := storageSize(out)
		if err != nil {
			return err
		}
		u, err := datastore.TenantUsage(ctx, root, tn)
		if err != nil {
			return err
		}
		if math.Abs(metric-float64(u.Bytes)) > float64(u.Bytes)/10 {
			return fmt.Errorf("apiserver_storage_size_bytes = %.0f, the prefix holds %d bytes", metric, u.Bytes)
		}
		return nil
	})
	eventually(t, 3*time.Minute, "gw-a's usage to match its prefix after expiring leases", func(ctx context.Context) error {
		left, err := root.Get(ctx, tn.Prefix+"/e2e-leased/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if left.Count != 0 {
			return fmt.Errorf("%d leased keys still there", left.Count)
		}
		return matches(ctx)
	})
}

// continueToken lists ConfigMaps two at a time and returns the token of
// the next page.
func continueToken(t *testing.T, kubeconfig, namespace string) string {
	t.Helper()
	out := mustTkube(t, kubeconfig, "get", "--raw", "/api/v1/namespaces/"+namespace+"/configmaps?limit=2")
	var list struct {
		Metadata struct {
			Continue string `json:"continue"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Metadata.Continue == "" {
		t.Fatalf("no continue token in %s: %v", out, err)
	}
	return list.Metadata.Continue
}

func testContinueExpires(t *testing.T) {
	ka := tenantKubeconfig(t, "gw-a")
	mustTkube(t, ka, "create", "namespace", "paging")
	for i := range 5 {
		mustTkube(t, ka, "-n", "paging", "create", "configmap", fmt.Sprintf("p-%d", i), "--from-literal=k=v")
	}
	token := continueToken(t, ka, "paging")
	issued := time.Now()
	if _, err := tkube(t, ka, "get", "--raw", "/api/v1/namespaces/paging/configmaps?limit=2&continue="+token); err != nil {
		t.Fatalf("a fresh continue token does not work: %v", err)
	}
	i := 0
	eventually(t, 10*time.Minute, "the continue token to expire", func(ctx context.Context) error {
		// Writes move the revision on, so the compactor has history to
		// compact.
		i++
		if _, err := kubectlIn(ctx, ka, "", "-n", "paging", "create", "configmap", fmt.Sprintf("later-%d", i), "--from-literal=k=v"); err != nil {
			return err
		}
		out, err := kubectlIn(ctx, ka, "", "get", "--raw", "/api/v1/namespaces/paging/configmaps?limit=2&continue="+token)
		switch {
		case err == nil:
			return fmt.Errorf("the token still works %s after issue", time.Since(issued).Round(time.Second))
		case strings.Contains(err.Error(), "Expired") || strings.Contains(err.Error(), "too old") || strings.Contains(err.Error(), "410"):
			return nil
		default:
			return stopWaiting("listing with the token: %v\n%s", err, out)
		}
	})
	t.Logf("the continue token expired %s after issue", time.Since(issued).Round(time.Second))
}

// gatewayPIDs are the running gateway processes of the test cluster.
func gatewayPIDs() []int {
	return hostproc.PIDs(hostproc.Find(func(p hostproc.Process) bool {
		return p.Command() == "kubinception" && slices.Contains(p.Args, "gateway")
	}))
}

func testGatewayKilled(t *testing.T) {
	ka := tenantKubeconfig(t, "gw-b")
	rc, err := clientcmd.BuildConfigFromFlags("", ka)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "writes"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The watcher resumes from the last revision it saw when its stream
	// breaks, as every client of a real cluster does.
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return cs.CoreV1().ConfigMaps(ns).Watch(ctx, o)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for ev := range w.ResultChan() {
			if cm, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type == watch.Added {
				mu.Lock()
				seen[cm.Name] = true
				mu.Unlock()
			}
		}
	}()

	pids := gatewayPIDs()
	if len(pids) < 2 {
		t.Fatalf("want at least 2 gateway processes to kill one, found %v", pids)
	}
	var acked []string
	var failures []error
	const writes = 200
	for i := range writes {
		if i == writes/4 {
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatalf("kill gateway %d: %v", pids[0], err)
			}
			t.Logf("killed gateway process %d after %d writes", pids[0], i)
		}
		name := fmt.Sprintf("w-%03d", i)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cs.CoreV1().ConfigMaps(ns).Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": name}}, metav1.CreateOptions{})
		cancel()
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", name, err))
			continue
		}
		acked = append(acked, name)
	}
	t.Logf("%d of %d writes acknowledged; %d failed: %v", len(acked), writes, len(failures), errors.Join(failures...))
	if len(acked) < writes/2 {
		t.Fatalf("only %d of %d writes acknowledged across a gateway restart", len(acked), writes)
	}
	got, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, cm := range got.Items {
		present[cm.Name] = true
	}
	for _, name := range acked {
		if !present[name] {
			t.Errorf("acknowledged write %s is gone", name)
		}
	}
	eventually(t, 2*time.Minute, "the watcher to see every acknowledged write", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		var missed []string
		for _, name := range acked {
			if !seen[name] {
				missed = append(missed, name)
			}
		}
		if len(missed) > 0 {
			return fmt.Errorf("the watcher missed %d: %v", len(missed), missed)
		}
		return nil
	})
	waitTenantReady(t, "gw-b")
}

// storageSize reads apiserver_storage_size_bytes from a Prometheus text
// exposition.
func storageSize(metrics string) (float64, error) {
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "apiserver_storage_size_bytes") {
			continue
		}
		fields := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err != nil {
			return 0, fmt.Errorf("parse %q: %w", line, err)
		}
		return v, nil
	}
	return 0, errors.New("no apiserver_storage_size_bytes in the API server's metrics")
}
