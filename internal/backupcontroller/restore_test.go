package backupcontroller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/testenv"
)

// controlPlane stands in for what the TenantCluster reconciler and the
// kubelet keep of a running tenant: its Deployment and one pod.
func (w *world) controlPlane(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	labels := controlplane.Labels(name)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: controlplane.DeploymentName(name), Namespace: w.ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
	if err := w.api.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-cp-0", Namespace: w.ns, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if err := w.api.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func (w *world) restorer() *backupcontroller.RestoreReconciler {
	return &backupcontroller.RestoreReconciler{Client: w.api.Client, APIReader: w.api.Client, Clock: clock.RealClock{},
		Recorder: events.NewFakeRecorder(100), Backups: w.r, Poll: time.Millisecond}
}

func (w *world) restoreStep(t *testing.T, rr *backupcontroller.RestoreReconciler, name string) *kv1.TenantRestore {
	t.Helper()
	if _, err := rr.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: w.ns, Name: name}}); err != nil {
		t.Fatalf("restore reconcile: %v\ngateway log:\n%s", err, w.gw.Log.String())
	}
	tr := &kv1.TenantRestore{}
	if err := w.api.Client.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: name}, tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestRollBack rolls a running tenant back to a backup: the cluster is
// paused and its control plane scaled to zero, the restore waits until no
// control-plane pod is left, the keys are replaced (a key written after
// the backup is gone, one deleted after it is back), and the cluster is
// resumed.
func TestRollBack(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	_, cli := w.cluster(t, "shop", 40)
	pod := w.controlPlane(t, "shop")
	tb, err := w.settle(t, w.backupOf(t, "shop-1", "shop"), 5)
	if err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup: %+v %v", tb.Status, err)
	}
	before, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/registry/configmaps/default/after-backup", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/registry/configmaps/default/cm-0003"); err != nil {
		t.Fatal(err)
	}
	last, err := cli.Get(ctx, "/registry/configmaps/default/after-backup")
	if err != nil {
		t.Fatal(err)
	}

	rr := w.restorer()
	if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: w.ns}, Spec: kv1.TenantRestoreSpec{Backup: "shop-1"}}); err != nil {
		t.Fatal(err)
	}
	var tr *kv1.TenantRestore
	for range 5 {
		tr = w.restoreStep(t, rr, "back")
	}
	if tr.Status.Phase != kv1.RestoreStopping || !tr.Status.PausedByRestore {
		t.Fatalf("with a control-plane pod left: %+v", tr.Status)
	}
	got := &kv1.TenantCluster{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "shop"}, got); err != nil || !got.Spec.Paused {
		t.Fatalf("cluster not paused while its keys are replaced: %v %v", got.Spec.Paused, err)
	}
	dep := &appsv1.Deployment{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: controlplane.DeploymentName("shop")}, dep); err != nil || *dep.Spec.Replicas != 0 {
		t.Fatalf("control plane not scaled to zero: %v %v", dep.Spec.Replicas, err)
	}
	// The pod goes, as the ReplicaSet controller and kubelet would have it.
	if err := w.api.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if tr = w.restoreStep(t, rr, "back"); tr.Status.Phase == kv1.RestoreCompleted {
			break
		}
	}
	if tr.Status.Phase != kv1.RestoreCompleted || tr.Status.Objects != 40 || tr.Status.Revision <= last.Header.Revision || tr.Status.Message != "" {
		t.Fatalf("restore status %+v (last write at revision %d)", tr.Status, last.Header.Revision)
	}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "shop"}, got); err != nil || got.Spec.Paused {
		t.Fatalf("cluster not resumed: %v %v", got.Spec.Paused, err)
	}
	after, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Kvs) != len(before.Kvs) {
		t.Fatalf("%d keys after the roll back, %d at the backup", len(after.Kvs), len(before.Kvs))
	}
	for i := range before.Kvs {
		if string(after.Kvs[i].Key) != string(before.Kvs[i].Key) || string(after.Kvs[i].Value) != string(before.Kvs[i].Value) {
			t.Fatalf("key %d: %s after, %s at the backup", i, after.Kvs[i].Key, before.Kvs[i].Key)
		}
		if after.Kvs[i].ModRevision <= last.Header.Revision {
			t.Fatalf("%s restored at revision %d, not above %d: a watcher would see time go back", after.Kvs[i].Key, after.Kvs[i].ModRevision, last.Header.Revision)
		}
	}
}

// TestRestoreRefusals: a missing backup fails at once; a cluster paused
// before the restore stays paused, with a message saying so.
func TestRestoreRefusals(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	w.cluster(t, "shop", 3)
	rr := w.restorer()
	if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "none", Namespace: w.ns}, Spec: kv1.TenantRestoreSpec{Backup: "nope"}}); err != nil {
		t.Fatal(err)
	}
	if tr := w.restoreStep(t, rr, "none"); tr.Status.Phase != kv1.RestoreFailed || !strings.Contains(tr.Status.Message, `spec.backup: TenantBackup "nope" not found`) {
		t.Fatalf("missing backup: %+v", tr.Status)
	}

	if tb, err := w.settle(t, w.backupOf(t, "shop-1", "shop"), 5); err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup: %+v %v", tb.Status, err)
	}
	tc := &kv1.TenantCluster{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "shop"}, tc); err != nil {
		t.Fatal(err)
	}
	tc.Spec.Paused = true
	if err := w.api.Client.Update(ctx, tc); err != nil {
		t.Fatal(err)
	}
	if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "paused", Namespace: w.ns}, Spec: kv1.TenantRestoreSpec{Backup: "shop-1"}}); err != nil {
		t.Fatal(err)
	}
	var tr *kv1.TenantRestore
	for range 8 {
		if tr = w.restoreStep(t, rr, "paused"); tr.Status.Phase == kv1.RestoreCompleted {
			break
		}
	}
	if tr.Status.Phase != kv1.RestoreCompleted || tr.Status.PausedByRestore || !strings.Contains(tr.Status.Message, "stays paused") {
		t.Fatalf("restore of a paused cluster: %+v", tr.Status)
	}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "shop"}, tc); err != nil || !tc.Spec.Paused {
		t.Fatalf("a cluster paused before the restore was resumed: %v %v", tc.Spec.Paused, err)
	}
}

// TestRollBackFromS3: a backup kept in a real S3-compatible server rolls
// its tenant back like one on the volume: the key written after it is
// gone, the one deleted after it is back.
func TestRollBackFromS3(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	_, cli := w.cluster(t, "shop", 30)
	srv := testenv.StartS3Server(t, "127.0.0.1", "backups")
	w.r.S3 = &backupcontroller.S3Settings{Endpoint: srv.Endpoint, Bucket: "backups", CredentialsSecret: "s3-credentials"}
	if err := w.api.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "s3-credentials"},
		Data: map[string][]byte{backupcontroller.S3AccessKeyID: []byte(srv.AccessKeyID), backupcontroller.S3SecretAccessKey: []byte(srv.SecretAccessKey)}}); err != nil {
		t.Fatal(err)
	}
	tb := &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: "shop-s3", Namespace: w.ns}, Spec: kv1.TenantBackupSpec{Cluster: "shop", Target: kv1.BackupTargetS3}}
	if err := w.api.Client.Create(ctx, tb); err != nil {
		t.Fatal(err)
	}
	if got, err := w.settle(t, tb, 5); err != nil || got.Status.Phase != kv1.BackupCompleted || got.Status.Target != kv1.BackupTargetS3 {
		t.Fatalf("backup to S3: %+v %v", got.Status, err)
	}
	before, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/registry/configmaps/default/after-backup", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/registry/configmaps/default/cm-0003"); err != nil {
		t.Fatal(err)
	}
	rr := w.restorer()
	if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: w.ns}, Spec: kv1.TenantRestoreSpec{Backup: "shop-s3"}}); err != nil {
		t.Fatal(err)
	}
	var tr *kv1.TenantRestore
	for range 8 {
		if tr = w.restoreStep(t, rr, "back"); tr.Status.Phase == kv1.RestoreCompleted {
			break
		}
	}
	if tr.Status.Phase != kv1.RestoreCompleted || tr.Status.Objects != 30 {
		t.Fatalf("restore from S3: %+v", tr.Status)
	}
	after, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Kvs) != len(before.Kvs) {
		t.Fatalf("%d keys after the roll back, %d at the backup", len(after.Kvs), len(before.Kvs))
	}
	for i := range before.Kvs {
		if string(after.Kvs[i].Key) != string(before.Kvs[i].Key) || string(after.Kvs[i].Value) != string(before.Kvs[i].Value) {
			t.Fatalf("key %d: %s after, %s at the backup", i, after.Kvs[i].Key, before.Kvs[i].Key)
		}
	}
}
