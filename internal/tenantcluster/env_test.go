package tenantcluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastorecontroller"
	"kubinception.dev/kubinception/internal/tenantcluster"
	"kubinception.dev/kubinception/internal/testenv"
)

// The tests of this package's Reconcile run against a real kube-apiserver
// (the admin cluster, shared by the package) and real etcd processes (the
// datastore, one per test, authentication on). Nothing else runs: the
// tests call Reconcile as the controller would and stand in for what the
// admin cluster's controllers and kubelet would do (a Deployment's status,
// garbage collection, the tenant's API server process), each where the
// scenario needs it.

func TestMain(m *testing.M) { testenv.Main(m) }

// nodeAddress is the admin node's InternalIP, the address NodePort
// tenants advertise.
const nodeAddress = "10.199.0.1"

// env is one test's world.
type env struct {
	api   *testenv.APIServer
	etcd  *testenv.Etcd
	root  *clientv3.Client
	ds    *kv1.Datastore
	ns    string
	clock *clocktesting.FakePassiveClock
	rec   *events.FakeRecorder
	r     *tenantcluster.Reconciler
}

var nodeOnce sync.Once

// start gives the test a namespace, a real etcd with authentication on, a
// Datastore of the test's name on it with its gateway's CA and endpoint
// in place (the Datastore reconciler's work), an admin node, and a
// TenantCluster reconciler.
func start(t *testing.T) *env {
	t.Helper()
	api := testenv.SharedAPIServer(t)
	nodeOnce.Do(func() { createNode(t, api.Client) })
	e := testenv.StartEtcd(t)
	root := e.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ds := testenv.CreateDatastore(t, api.Client, e, name, name)
	// The clock starts at the real time: the certificates the reconciler
	// issues at its "now" are checked by real TLS stacks.
	clock := clocktesting.NewFakePassiveClock(time.Now().Truncate(time.Second))
	stores := &datastore.ClientCache{}
	t.Cleanup(stores.Close)

	// The Datastore reconciler gives the datastore its gateway: the CA
	// tenants' certificates come from and the endpoint in status.
	dsr := &datastorecontroller.Reconciler{Client: api.Client, APIReader: api.Client, Clock: clock, Datastores: stores,
		Gateway: datastorecontroller.GatewayOptions{Namespace: name, Image: "kubinception.local/kubinception:test"}}
	if _, err := dsr.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: ds.Name}}); err != nil {
		t.Fatalf("Datastore reconcile: %v", err)
	}
	rec := events.NewFakeRecorder(200)
	return &env{api: api, etcd: e, root: root, ds: ds, ns: name, clock: clock, rec: rec, r: &tenantcluster.Reconciler{
		Client: api.Client, APIReader: api.Client, Clock: clock, Recorder: rec, Datastores: stores,
		Registry: "kubinception.local", Image: "kubinception.local/kubinception:test", GatewayNamespace: name,
	}}
}

// createNode registers the admin node, Ready with an InternalIP, as its
// kubelet would.
func createNode(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "admin-node"}}
	if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeAddress}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
}

// tenant creates a TenantCluster in the test's namespace on its datastore.
func (e *env) tenant(t *testing.T, name string, mutate func(*kv1.TenantCluster)) *kv1.TenantCluster {
	t.Helper()
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: kv1.TenantClusterSpec{Datastore: kv1.DatastorePlacement{Name: e.ds.Name}}}
	if mutate != nil {
		mutate(tc)
	}
	if err := e.api.Client.Create(context.Background(), tc); err != nil {
		t.Fatal(err)
	}
	return tc
}

func (e *env) reconcile(t *testing.T, tc *kv1.TenantCluster) (ctrl.Result, error) {
	t.Helper()
	return e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc)})
}

func (e *env) mustReconcile(t *testing.T, tc *kv1.TenantCluster) ctrl.Result {
	t.Helper()
	res, err := e.reconcile(t, tc)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

// get reads tc as the API server has it; nil when it is gone.
func (e *env) get(t *testing.T, tc *kv1.TenantCluster) *kv1.TenantCluster {
	t.Helper()
	got := &kv1.TenantCluster{}
	if err := e.api.Client.Get(context.Background(), client.ObjectKeyFromObject(tc), got); apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return got
}

// exists says whether the object of obj's kind and name is in tc's
// namespace.
func (e *env) exists(t *testing.T, obj client.Object) bool {
	t.Helper()
	err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: obj.GetName()}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// controlPlaneObjects are the objects the operator creates for a tenant.
func controlPlaneObjects(name string) []client.Object {
	return []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cp.ServiceName(name)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cp.PKISecretName(name)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cp.AdminKubeconfigSecret(name)}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(name)}},
	}
}

// condition is tc's condition of a type; it fails the test when missing.
func condition(t *testing.T, tc *kv1.TenantCluster, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(tc.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("TenantCluster %s has no %s condition; conditions: %+v", tc.Name, typ, tc.Status.Conditions)
	}
	return *c
}

// wantCondition checks a condition's status and reason.
func wantCondition(t *testing.T, tc *kv1.TenantCluster, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	c := condition(t, tc, typ)
	if c.Status != status || c.Reason != reason {
		t.Errorf("%s = %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	return c
}

// emitted drains the Events recorded so far.
func (e *env) emitted() []string {
	var out []string
	for {
		select {
		case ev := <-e.rec.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// wantEvent fails the test unless an Event starting with prefix ("Warning
// ReconcileFailed") is among events.
func wantEvent(t *testing.T, events []string, prefix string) {
	t.Helper()
	for _, ev := range events {
		if strings.HasPrefix(ev, prefix+" ") {
			return
		}
	}
	t.Errorf("no event %q among %q", prefix, events)
}

// setAvailable writes the control-plane Deployment's status as the
// Deployment controller would once its pods are ready.
func (e *env) setAvailable(t *testing.T, tc *kv1.TenantCluster) {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: cp.DeploymentName(tc.Name)}, dep); err != nil {
		t.Fatal(err)
	}
	n := *dep.Spec.Replicas
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if err := e.api.Client.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
}

// collectGarbage finishes the foreground deletion of the control-plane
// Deployment, as the garbage collector would once its pods are gone.
func (e *env) collectGarbage(t *testing.T, tc *kv1.TenantCluster) {
	t.Helper()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}
	if !e.exists(t, dep) {
		t.Fatal("no control-plane Deployment to collect")
	}
	if dep.DeletionTimestamp.IsZero() {
		t.Fatal("the control-plane Deployment is not being deleted")
	}
	e.api.Update(t, dep, func() { dep.Finalizers = nil })
}

// keys counts the keys under a prefix in the datastore.
func (e *env) keys(t *testing.T, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.root.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// userExists says whether the datastore has the etcd user.
func (e *env) userExists(t *testing.T, user string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.root.UserGet(ctx, user)
	if err != nil && !strings.Contains(err.Error(), "user name not found") {
		t.Fatal(err)
	}
	return err == nil
}

// provision reconciles a new tenant up to its control plane: the
// finalizer, then the phases until the control plane waits for its pods.
func (e *env) provision(t *testing.T, tc *kv1.TenantCluster) *kv1.TenantCluster {
	t.Helper()
	e.mustReconcile(t, tc)
	e.mustReconcile(t, tc)
	got := e.get(t, tc)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	if got.Status.Datastore.Prefix == "" {
		t.Fatalf("provisioned tenant has no datastore prefix: %+v", got.Status)
	}
	return got
}

// ready brings a new tenant to Ready: provisioned, its pods available,
// its API server started and the addons applied. It returns the tenant
// as stored and its API server.
func (e *env) ready(t *testing.T, tc *kv1.TenantCluster) (*kv1.TenantCluster, *tenantAPIServer) {
	t.Helper()
	e.provision(t, tc)
	e.setAvailable(t, tc)
	e.mustReconcile(t, tc)
	tenant := e.startTenantAPIServer(t, e.get(t, tc))
	e.mustReconcile(t, tc)
	got := e.get(t, tc)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady)
	return got, tenant
}

// tenantAPIServer is the tenant's own kube-apiserver, run as its
// control-plane pod runs it: with the arguments of the Deployment the
// operator applied and the files of the PKI Secret it wrote. Three things
// stand in for what the admin cluster would do: it listens on the tenant
// Service's ClusterIP and port (a loopback address in the test's admin
// cluster, where kube-proxy would forward), and it stores in the datastore
// under the tenant's prefix with the root credential (where the datastore
// gateway would map the tenant's own keys).
type tenantAPIServer struct {
	// Client reaches it with the customer's admin kubeconfig.
	Client kubernetes.Interface
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// startTenantAPIServer starts the tenant's API server and waits until it
// answers; it is stopped when the test ends, or by stop.
func (e *env) startTenantAPIServer(t *testing.T, tc *kv1.TenantCluster) *tenantAPIServer {
	t.Helper()
	ctx := context.Background()
	bin := testenv.FindBinaries(t).KubeAPIServer
	pkiSecret, svc, kubeconfig, dep := &corev1.Secret{}, &corev1.Service{}, &corev1.Secret{}, &appsv1.Deployment{}
	for name, obj := range map[string]client.Object{cp.PKISecretName(tc.Name): pkiSecret, cp.ServiceName(tc.Name): svc,
		cp.AdminKubeconfigSecret(tc.Name): kubeconfig, cp.DeploymentName(tc.Name): dep} {
		if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: name}, obj); err != nil {
			t.Fatal(err)
		}
	}
	var container *corev1.Container
	containers := append(append([]corev1.Container{}, dep.Spec.Template.Spec.InitContainers...), dep.Spec.Template.Spec.Containers...)
	for i := range containers {
		if containers[i].Name == "kube-apiserver" {
			container = &containers[i]
		}
	}
	if container == nil || len(container.VolumeMounts) == 0 {
		t.Fatalf("no kube-apiserver container with the PKI mounted in the control-plane Deployment")
	}
	dir := t.TempDir()
	for name, data := range pkiSecret.Data {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rootCert := e.etcd.ClientCert(t, "root")
	for name, data := range map[string][]byte{"test-etcd-ca.crt": e.etcd.CA.CertPEM, "test-etcd-root.crt": rootCert.CertPEM, "test-etcd-root.key": rootCert.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The PKI volume's files are in dir; the other Secrets the API server
	// mounts (encryption and egress configuration, which the operator
	// wrote) are read from the admin API, as the kubelet would mount
	// them; the tunnel's socket directory is empty (no test here dials
	// through it).
	secretOf := map[string]string{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretOf[v.Name] = v.Secret.SecretName
		}
	}
	local := map[string]string{}
	for _, m := range container.VolumeMounts {
		switch {
		case m.Name == "pki":
			local[m.MountPath] = dir
		case secretOf[m.Name] != "":
			secret := &corev1.Secret{}
			if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: secretOf[m.Name]}, secret); err != nil {
				t.Fatal(err)
			}
			secretDir := t.TempDir()
			for name, data := range secret.Data {
				if err := os.WriteFile(filepath.Join(secretDir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			local[m.MountPath] = secretDir
		case m.Name == "tunnel":
			local[m.MountPath] = t.TempDir()
		}
	}
	var args []string
	for _, a := range container.Args {
		for mount, d := range local {
			a = strings.ReplaceAll(a, "="+mount+"/", "="+d+"/")
		}
		args = append(args, a)
	}
	ip := svc.Spec.ClusterIP
	// Later flags win.
	args = append(args,
		"--bind-address="+ip, fmt.Sprintf("--secure-port=%d", cp.DefaultPort),
		"--etcd-servers="+e.etcd.Endpoint, "--etcd-prefix="+tc.Status.Datastore.Prefix+"/registry",
		"--etcd-cafile="+filepath.Join(dir, "test-etcd-ca.crt"),
		"--etcd-certfile="+filepath.Join(dir, "test-etcd-root.crt"), "--etcd-keyfile="+filepath.Join(dir, "test-etcd-root.key"),
	)
	a := &tenantAPIServer{cmd: exec.Command(bin, args...), exited: make(chan struct{}), log: filepath.Join(dir, "kube-apiserver.log")}
	logFile, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	testenv.DieWithTest(a.cmd)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); logFile.Close(); close(a.exited) }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(a.log)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("tenant kube-apiserver log (end):\n%s", b)
		}
	})

	// The customer's kubeconfig, pointed at the Service instead of the
	// node port (which is kube-proxy's business).
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig.Data["kubeconfig"])
	if err != nil {
		t.Fatalf("the admin kubeconfig: %v", err)
	}
	cfg.Host = fmt.Sprintf("https://%s:%d", ip, cp.DefaultPort)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Client = cs
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-a.exited:
			return false, fmt.Errorf("the tenant kube-apiserver exited: %v", a.cmd.ProcessState)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, last = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("the tenant kube-apiserver at %s did not become ready: %v (last answer: %v)", cfg.Host, err, last)
	}
	return a
}

// stop ends the tenant's API server, as the kubelet does when its pod is
// deleted.
func (a *tenantAPIServer) stop(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}
