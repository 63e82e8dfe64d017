package backupcontroller_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// world is a namespace of the shared API server, a real datastore behind
// a gateway served in the test on the cluster IP of its Service (the API
// server's Service range is loopback), and a reconciler.
type world struct {
	api   *testenv.APIServer
	gwd   *testenv.GatewayDatastore
	gw    *testenv.Gateway
	ns    string
	dir   string
	rec   *events.FakeRecorder
	r     *backupcontroller.Reconciler
	datas string
}

func start(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	api := testenv.SharedAPIServer(t)
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if err := api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	gwd := testenv.StartGatewayDatastore(t)
	const ds = "default"
	// The gateway's Service, as the Datastore reconciler makes it.
	svc := gatewaydeploy.Service(gatewaydeploy.Params{Datastore: ds, Namespace: ns})
	if err := api.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// The gateway CA's Secret, and a serving certificate for the
	// Service's cluster IP, as the Datastore reconciler issues it.
	if err := api.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: gatewaydeploy.CASecretName(ds)},
		Data: map[string][]byte{gatewaydeploy.FileCACert: gwd.TenantCA.CertPEM, gatewaydeploy.FileCAKey: gwd.TenantCA.KeyPEM}}); err != nil {
		t.Fatal(err)
	}
	serving, err := gwd.TenantCA.Issue(gatewaydeploy.ServingSpec(ds, ns, svc.Spec.ClusterIP), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := (pki.Dir{Path: gwd.Dir}).Save("serving", serving); err != nil {
		t.Fatal(err)
	}
	gw := gwd.StartGateway(t, func(c *gateway.Config) {
		c.Policy = gateway.StaticPolicy{}
		c.CompactionInterval = 0
		c.AdminAddress = gatewaydeploy.AdminAddress(svc.Spec.ClusterIP)
		c.ListenAddress = net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(gatewaydeploy.ClientPort))
	})
	rec := events.NewFakeRecorder(100)
	dir := t.TempDir()
	return &world{api: api, gwd: gwd, gw: gw, ns: ns, dir: dir, rec: rec, datas: ds, r: &backupcontroller.Reconciler{
		Client: api.Client, APIReader: api.Client, Clock: clock.RealClock{}, Recorder: rec,
		Target: backup.Dir{Path: dir}, TargetName: "dir:" + dir, Namespace: ns, GatewayNamespace: ns,
		Timeout: time.Minute,
	}}
}

// cluster creates a TenantCluster and writes n keys into its tenant
// through the gateway, as its API server would.
func (w *world) cluster(t *testing.T, name string, n int) (*kv1.TenantCluster, *clientv3.Client) {
	t.Helper()
	ctx := context.Background()
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns},
		Spec: kv1.TenantClusterSpec{Datastore: kv1.DatastorePlacement{Name: w.datas}}}
	if err := w.api.Client.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	cli, err := w.gwd.TenantClient(w.gw.Addr(), string(tc.UID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/configmaps/default/cm-%04d", i), strings.Repeat("x", 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	return tc, cli
}

func (w *world) backupOf(t *testing.T, name, cluster string) *kv1.TenantBackup {
	t.Helper()
	tb := &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns}, Spec: kv1.TenantBackupSpec{Cluster: cluster}}
	if err := w.api.Client.Create(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	return tb
}

// settle reconciles as the controller would until the backup reaches a
// final phase or a reconcile fails, at most n times.
func (w *world) settle(t *testing.T, tb *kv1.TenantBackup, n int) (*kv1.TenantBackup, error) {
	t.Helper()
	var err error
	for range n {
		_, err = w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: tb.Namespace, Name: tb.Name}})
		got := &kv1.TenantBackup{}
		if gerr := w.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tb.Namespace, Name: tb.Name}, got); gerr != nil {
			t.Fatal(gerr)
		}
		if got.Status.Phase == kv1.BackupCompleted || got.Status.Phase == kv1.BackupFailed {
			return got, err
		}
	}
	got := &kv1.TenantBackup{}
	if gerr := w.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tb.Namespace, Name: tb.Name}, got); gerr != nil {
		t.Fatal(gerr)
	}
	return got, err
}

// TestBackupCompletesAndRestores backs a tenant up through its gateway's
// Service with the operator's own admin certificate and key Secret, then
// restores the archive with the key from that Secret into another tenant:
// the copy holds exactly the tenant's keys at the backup's revision.
// Deleting the TenantBackup deletes the archive.
func TestBackupCompletesAndRestores(t *testing.T) {
	w := start(t)
	tc, cli := w.cluster(t, "shop", 120)
	tb, err := w.settle(t, w.backupOf(t, "shop-1", "shop"), 5)
	if err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup: phase %q, message %q, error %v\ngateway log:\n%s", tb.Status.Phase, tb.Status.Message, err, w.gw.Log.String())
	}
	st := tb.Status
	if st.Objects != 120 || st.TenantUID != string(tc.UID) || st.Revision == 0 || st.ArchiveBytes == 0 || len(st.SHA256) != 64 ||
		st.Datastore != w.datas || st.StartTime == nil || st.CompletionTime == nil || st.Attempts != 1 {
		t.Fatalf("status = %+v", st)
	}
	if !strings.HasPrefix(st.Location, "dir:"+w.dir+"/") {
		t.Fatalf("location %q is not in the target", st.Location)
	}
	if _, err := os.Stat(filepath.Join(w.dir, string(tb.UID)+".kvs.age")); err != nil {
		t.Fatalf("archive not in the target: %v", err)
	}

	// Written after the backup: not restored.
	if _, err := cli.Put(context.Background(), "/registry/configmaps/default/late", "x"); err != nil {
		t.Fatal(err)
	}
	id, _, err := w.r.Key(context.Background())
	if err != nil || id == nil {
		t.Fatalf("backup key: %v %v", id, err)
	}
	clone, _ := w.cluster(t, "shop-clone", 0)
	admin := w.admin(t)
	if _, err := backup.RestoreFrom(context.Background(), w.r.Target, string(tb.UID), admin.Restorer(string(clone.UID), id, backup.IntoEmpty)); err != nil {
		t.Fatal(err)
	}
	cc, err := w.gwd.TenantClient(w.gw.Addr(), string(clone.UID))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	got, err := cc.Get(context.Background(), "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 120 {
		t.Fatalf("clone holds %v keys (%v), want 120", got, err)
	}

	// Deleting the TenantBackup deletes its archive.
	if err := w.api.Client.Delete(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	if _, err := w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: tb.Namespace, Name: tb.Name}}); err != nil {
		t.Fatal(err)
	}
	if err := w.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tb.Namespace, Name: tb.Name}, &kv1.TenantBackup{}); !apierrors.IsNotFound(err) {
		t.Fatalf("TenantBackup still there after its finalizer ran: %v", err)
	}
	if list, err := backup.List(context.Background(), w.r.Target, ""); err != nil || len(list) != 0 {
		t.Fatalf("archives left: %v %v", list, err)
	}
}

func (w *world) admin(t *testing.T) *gateway.AdminClient {
	t.Helper()
	tc, err := backupcontroller.AdminTLS(w.gwd.TenantCA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return gateway.NewAdminClient(w.gw.AdminAddr(), tc)
}

// TestBackupFailures: a missing cluster and a missing target fail at
// once with a message saying what to do; a gateway that cannot be reached
// is tried three times, then the backup fails saying why.
func TestBackupFailures(t *testing.T) {
	w := start(t)
	w.cluster(t, "shop", 1)

	tb, _ := w.settle(t, w.backupOf(t, "nothing", "no-such-cluster"), 3)
	if tb.Status.Phase != kv1.BackupFailed || !strings.Contains(tb.Status.Message, `spec.cluster: TenantCluster "no-such-cluster" not found`) {
		t.Fatalf("missing cluster: %+v", tb.Status)
	}

	target := w.r.Target
	w.r.Target = nil
	tb, _ = w.settle(t, w.backupOf(t, "no-target", "shop"), 3)
	if tb.Status.Phase != kv1.BackupFailed || !strings.Contains(tb.Status.Message, "--backup-host-path") {
		t.Fatalf("no target: %+v", tb.Status)
	}
	w.r.Target = target

	w.r.Gateway = func(context.Context, string) (*gateway.AdminClient, error) {
		return nil, errors.New("gateway unreachable")
	}
	tb, err := w.settle(t, w.backupOf(t, "unreachable", "shop"), 6)
	if tb.Status.Phase != kv1.BackupFailed || tb.Status.Attempts != 3 || !strings.Contains(tb.Status.Message, "gateway unreachable") {
		t.Fatalf("unreachable gateway: %+v (last error %v)", tb.Status, err)
	}
	var events []string
	for len(w.rec.Events) > 0 {
		events = append(events, <-w.rec.Events)
	}
	if !strings.Contains(strings.Join(events, "\n"), "BackupRetrying") {
		t.Fatalf("no retry event among %q", events)
	}
}

// TestBackupToS3 backs a tenant up into a real S3-compatible server with
// the credentials the operator reads from its Secret at each use: the
// archive is two objects under the prefix, status names the target and
// location, a backup asking for an S3 target the operator lacks fails
// saying how to configure it, and deleting the TenantBackup deletes the
// objects.
func TestBackupToS3(t *testing.T) {
	w := start(t)
	w.cluster(t, "shop", 50)
	srv := testenv.StartS3Server(t, "127.0.0.1", "backups")

	tb := &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: "no-s3", Namespace: w.ns}, Spec: kv1.TenantBackupSpec{Cluster: "shop", Target: kv1.BackupTargetS3}}
	if err := w.api.Client.Create(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.settle(t, tb, 3); got.Status.Phase != kv1.BackupFailed || !strings.Contains(got.Status.Message, "--backup-s3-endpoint") {
		t.Fatalf("S3 asked of an operator without it: %+v", got.Status)
	}

	w.r.S3 = &backupcontroller.S3Settings{Endpoint: srv.Endpoint, Bucket: "backups", Prefix: "admin-1/", CredentialsSecret: "s3-credentials"}
	if err := w.api.Client.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "s3-credentials"},
		Data: map[string][]byte{backupcontroller.S3AccessKeyID: []byte(srv.AccessKeyID), backupcontroller.S3SecretAccessKey: []byte(srv.SecretAccessKey)}}); err != nil {
		t.Fatal(err)
	}
	tb = &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: "to-s3", Namespace: w.ns}, Spec: kv1.TenantBackupSpec{Cluster: "shop", Target: kv1.BackupTargetS3}}
	if err := w.api.Client.Create(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	got, err := w.settle(t, tb, 5)
	if err != nil || got.Status.Phase != kv1.BackupCompleted || got.Status.Objects != 50 {
		t.Fatalf("backup to S3: %+v (%v)", got.Status, err)
	}
	if got.Status.Target != kv1.BackupTargetS3 || got.Status.Location != "s3://backups/admin-1/"+string(got.UID) {
		t.Fatalf("target %q, location %q", got.Status.Target, got.Status.Location)
	}
	objects := func() []string {
		var keys []string
		for o := range srv.Client(t).ListObjects(context.Background(), "backups", minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			keys = append(keys, o.Key)
		}
		return keys
	}
	if keys := objects(); len(keys) != 2 {
		t.Fatalf("objects in the bucket: %q", keys)
	}
	// The volume target is still the default.
	if dflt, err := w.settle(t, w.backupOf(t, "default-target", "shop"), 5); err != nil || dflt.Status.Target != kv1.BackupTargetVolume {
		t.Fatalf("default target: %+v (%v)", dflt.Status, err)
	}

	if err := w.api.Client.Delete(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if _, err := w.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: got.Namespace, Name: got.Name}}); err != nil {
		t.Fatal(err)
	}
	if keys := objects(); len(keys) != 0 {
		t.Fatalf("objects left after the TenantBackup was deleted: %q", keys)
	}
}
