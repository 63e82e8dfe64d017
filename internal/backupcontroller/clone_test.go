package backupcontroller_test

import (
	"context"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// encryptionSecret gives a cluster the encryption Secret its reconciler
// would write: write is the writing key, read further keys.
func (w *world) encryptionSecret(t *testing.T, tc *kv1.TenantCluster, write string, read ...string) controlplane.EncryptionKeys {
	t.Helper()
	key := func(name string) controlplane.EncryptionKey {
		k, err := controlplane.NewEncryptionKey(name)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	w1 := key(write)
	keys := controlplane.EncryptionKeys{Write: &w1}
	for _, n := range read {
		keys.Read = append(keys.Read, key(n))
	}
	config, err := controlplane.RenderEncryptionConfig(keys)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: controlplane.EncryptionSecretName(tc.Name)},
		Data: map[string][]byte{controlplane.FileEncryptionConfig: config}}
	if err := w.api.Client.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return keys
}

func (w *world) newCluster(t *testing.T, name string, paused bool) *kv1.TenantCluster {
	t.Helper()
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns},
		Spec: kv1.TenantClusterSpec{Datastore: kv1.DatastorePlacement{Name: w.datas}, Paused: paused}}
	if err := w.api.Client.Create(context.Background(), tc); err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestClone restores a backup into a new, paused TenantCluster: the
// clone's tenant holds the source's keys, by content, under its own
// prefix; it gets the source's encryption keys (a rotation requested
// since the backup held two); it is resumed; the source is untouched.
func TestClone(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	src, srcCli := w.cluster(t, "shop", 25)
	srcKeys := w.encryptionSecret(t, src, "key-2", "key-1")
	if tb, err := w.settle(t, w.backupOf(t, "shop-1", "shop"), 5); err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup: %+v %v", tb.Status, err)
	}
	want, err := srcCli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srcCli.Put(ctx, "/registry/configmaps/default/after-backup", "source only"); err != nil {
		t.Fatal(err)
	}

	dst := w.newCluster(t, "shop-copy", true)
	rr := w.restorer()
	if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "copy", Namespace: w.ns},
		Spec: kv1.TenantRestoreSpec{Backup: "shop-1", Cluster: "shop-copy"}}); err != nil {
		t.Fatal(err)
	}
	var tr *kv1.TenantRestore
	for range 8 {
		if tr = w.restoreStep(t, rr, "copy"); tr.Status.Phase == kv1.RestoreCompleted || tr.Status.Phase == kv1.RestoreFailed {
			break
		}
	}
	if tr.Status.Phase != kv1.RestoreCompleted || !tr.Status.Clone || tr.Status.Cluster != "shop-copy" || tr.Status.Objects != 25 {
		t.Fatalf("clone status %+v", tr.Status)
	}
	dstCli, err := w.gwd.TenantClient(w.gw.Addr(), string(dst.UID))
	if err != nil {
		t.Fatal(err)
	}
	defer dstCli.Close()
	got, err := dstCli.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != len(want.Kvs) {
		t.Fatalf("clone holds %d keys, the source held %d at the backup", len(got.Kvs), len(want.Kvs))
	}
	for i := range want.Kvs {
		if string(got.Kvs[i].Key) != string(want.Kvs[i].Key) || string(got.Kvs[i].Value) != string(want.Kvs[i].Value) {
			t.Fatalf("key %d: clone has %s, source had %s", i, got.Kvs[i].Key, want.Kvs[i].Key)
		}
	}
	if n, err := srcCli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || n.Count != int64(len(want.Kvs))+1 {
		t.Fatalf("the source holds %v keys (%v), want its %d and the one written after the backup", n, err, len(want.Kvs)+1)
	}

	s := &corev1.Secret{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: controlplane.EncryptionSecretName("shop-copy")}, s); err != nil {
		t.Fatalf("the clone has no encryption Secret: %v", err)
	}
	keys, err := controlplane.ParseEncryptionConfig(s.Data[controlplane.FileEncryptionConfig])
	if err != nil {
		t.Fatal(err)
	}
	if keys.Write == nil || keys.Write.Name != srcKeys.Write.Name || string(keys.Write.Secret) != string(srcKeys.Write.Secret) ||
		len(keys.Read) != 1 || string(keys.Read[0].Secret) != string(srcKeys.Read[0].Secret) {
		t.Fatalf("the clone's keys are %v, want the source's %v", keys.Names(), srcKeys.Names())
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != dst.UID {
		t.Fatalf("the clone's encryption Secret is owned by %+v, want the clone", s.OwnerReferences)
	}
	got2 := &kv1.TenantCluster{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "shop-copy"}, got2); err != nil {
		t.Fatal(err)
	}
	if got2.Spec.Paused {
		t.Fatal("the clone was not resumed")
	}
	if got2.Annotations[kv1.AnnotationEncryptionKeyRotation] == "" {
		t.Fatal("the clone holds two keys and no rotation was requested")
	}
}

// TestCloneRefusals: a clone goes only into an existing TenantCluster
// that is paused and never ran; each refusal names the field and the way
// out, and changes nothing.
func TestCloneRefusals(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	w.cluster(t, "shop", 3)
	if tb, err := w.settle(t, w.backupOf(t, "shop-1", "shop"), 5); err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup: %+v %v", tb.Status, err)
	}
	w.newCluster(t, "running", false)
	ran := w.newCluster(t, "ran", true)
	if err := w.api.Client.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: controlplane.DeploymentName(ran.Name), Namespace: w.ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}); err != nil {
		t.Fatal(err)
	}
	rr := w.restorer()
	for _, c := range []struct{ cluster, want string }{
		{"missing", `spec.cluster: TenantCluster "missing" not found`},
		{"running", `spec.cluster: TenantCluster "running" is not paused`},
		{"ran", `spec.cluster: TenantCluster "ran" has a control plane`},
	} {
		if err := w.api.Client.Create(ctx, &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: "into-" + c.cluster, Namespace: w.ns},
			Spec: kv1.TenantRestoreSpec{Backup: "shop-1", Cluster: c.cluster}}); err != nil {
			t.Fatal(err)
		}
		tr := w.restoreStep(t, rr, "into-"+c.cluster)
		if tr.Status.Phase != kv1.RestoreFailed || !strings.Contains(tr.Status.Message, c.want) {
			t.Errorf("clone into %s: %+v, want Failed with %q", c.cluster, tr.Status, c.want)
		}
	}
	tc := &kv1.TenantCluster{}
	if err := w.api.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "running"}, tc); err != nil || tc.Spec.Paused {
		t.Fatalf("a refused clone paused its target: %v %v", tc.Spec.Paused, err)
	}
}
