package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/install"
)

// TestTenantBackup backs up a tenant holding 1,000 ConfigMaps while a
// client keeps writing to it, with the CLI, through the operator and the
// gateway's admin API, into the local admin cluster's backup directory.
// The archive, decrypted with the key the operator keeps, restores into a
// scratch prefix of the datastore exactly the tenant's keys at the
// backup's revision. Rolled back to it, the tenant loses what was created
// after it and gets back what was deleted, with resourceVersions that only
// go up. Deleting the TenantBackup deletes the archive.
func TestTenantBackup(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "bk"
	t.Cleanup(func() { removeTenants(t, name) })
	if r := run(t, "create", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster:\n%s", r)
	}
	tc := waitTenantReady(t, name)
	kc := tenantKubeconfig(t, name)
	mustTkube(t, kc, "create", "namespace", "data")
	for batch := range 4 {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
		for i := range 250 {
			fmt.Fprintf(&b, "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm-%04d, namespace: data}\n  data: {v: %q}\n", batch*250+i, strings.Repeat("d", 200))
		}
		mustApply(t, kc, b.String())
	}

	// A client writes throughout the backup.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := kubectlIn(ctx, kc, configMapOf("data", fmt.Sprintf("late-%04d", i), 100), "create", "-f", "-"); err == nil {
				writes.Add(1)
			}
		}
	}()
	eventually(t, time.Minute, "the writer's first writes", func(context.Context) error {
		if writes.Load() < 3 {
			return fmt.Errorf("%d writes", writes.Load())
		}
		return nil
	})
	r := run(t, "backup", "create", name, "--name", "bk-1", "--kubeconfig", adminKubeconfig())
	writesBefore := writes.Load()
	eventually(t, time.Minute, "writes after the backup", func(context.Context) error {
		if writes.Load() < writesBefore+2 {
			return fmt.Errorf("%d writes", writes.Load())
		}
		return nil
	})
	stop()
	wg.Wait()
	c := adminClient(t)
	tb := &kv1.TenantBackup{}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: "bk-1"}, tb); err != nil {
		t.Fatalf("backup create:\n%s\nTenantBackup: %v", r, err)
	}
	if r.err != nil || tb.Status.Phase != kv1.BackupCompleted {
		t.Fatalf("backup create:\n%s\nstatus: %+v\nevents:\n%s\noperator log:\n%s", r, tb.Status,
			mustKube(t, "get", "events", "-n", "default", "--field-selector", "involvedObject.name=bk-1"), operatorLog())
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("%d objects at revision %d", tb.Status.Objects, tb.Status.Revision)) {
		t.Errorf("backup create printed:\n%s", r.stdout)
	}
	if tb.Status.Objects < 1000 {
		t.Fatalf("backup holds %d objects, the tenant has 1,000 ConfigMaps and more", tb.Status.Objects)
	}
	if list := run(t, "backup", "list", name, "--kubeconfig", adminKubeconfig()); list.err != nil || !strings.Contains(list.stdout, "bk-1") || !strings.Contains(list.stdout, "Completed") {
		t.Errorf("backup list:\n%s", list)
	}

	// The archive, read with the operator's key, holds the tenant's keys
	// at the backup's revision and nothing else.
	dir := filepath.Join(root, "backups")
	store := backup.Dir{Path: dir}
	secret := &corev1.Secret{}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: install.Namespace, Name: backupcontroller.KeySecretName}, secret); err != nil {
		t.Fatal(err)
	}
	id, err := age.ParseX25519Identity(string(secret.Data[backupcontroller.KeyIdentity]))
	if err != nil {
		t.Fatal(err)
	}
	ds := datastoreClient(t)
	scratch := fmt.Sprintf("/e2e-restore/%d", time.Now().UnixNano())
	t.Cleanup(func() {
		if _, err := ds.Delete(context.Background(), scratch, clientv3.WithPrefix()); err != nil {
			t.Errorf("cleanup %s: %v", scratch, err)
		}
	})
	dst := backup.Source{KV: namespace.NewKV(ds.KV, scratch), Lease: namespace.NewLease(ds.Lease, scratch)}
	res, err := backup.RestoreFrom(t.Context(), store, string(tb.UID), dst.Restorer(id, backup.IntoEmpty))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ds.Get(t.Context(), tc.Status.Datastore.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(tb.Status.Revision))
	if err != nil {
		t.Fatalf("the tenant's keys at revision %d: %v", tb.Status.Revision, err)
	}
	got, err := ds.Get(t.Context(), scratch+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want.Kvs)) != tb.Status.Objects || res.Objects != len(want.Kvs) || len(got.Kvs) != len(want.Kvs) {
		t.Fatalf("the tenant held %d keys at revision %d; the backup says %d, the restore wrote %d, the scratch prefix holds %d",
			len(want.Kvs), tb.Status.Revision, tb.Status.Objects, res.Objects, len(got.Kvs))
	}
	for i, kv := range want.Kvs {
		k := strings.TrimPrefix(string(kv.Key), tc.Status.Datastore.Prefix)
		if g := got.Kvs[i]; strings.TrimPrefix(string(g.Key), scratch) != k || string(g.Value) != string(kv.Value) {
			t.Fatalf("key %d: restored %s, the tenant held %s (or the values differ)", i, g.Key, kv.Key)
		}
	}
	t.Logf("backup of %d objects at revision %d (%d bytes stored) while %d writes ran; restored and compared", tb.Status.Objects, tb.Status.Revision, tb.Status.ArchiveBytes, writes.Load())

	// Roll back: a ConfigMap created after the backup goes, one deleted
	// after it comes back, and every restored object's resourceVersion is
	// above any the tenant's clients saw before.
	inBackup := 0
	for _, kv := range want.Kvs {
		if strings.HasPrefix(string(kv.Key), tc.Status.Datastore.Prefix+"/registry/configmaps/data/") {
			inBackup++
		}
	}
	mustTkube(t, kc, "-n", "data", "create", "configmap", "after-backup", "--from-literal=k=v")
	mustTkube(t, kc, "-n", "data", "delete", "configmap", "cm-0001")
	seen := mustTkube(t, kc, "-n", "data", "get", "configmap", "after-backup", "-o", "jsonpath={.metadata.resourceVersion}")
	if r := run(t, "backup", "restore", "bk-1", "--kubeconfig", adminKubeconfig()); r.err != nil {
		tr := mustKube(t, "get", "tenantrestores", "-n", "default", "-o", "yaml")
		t.Fatalf("backup restore:\n%s\nTenantRestores:\n%s\noperator log:\n%s", r, tr, operatorLog())
	}
	waitTenantReady(t, name)
	var rv string
	eventually(t, 3*time.Minute, "the rolled-back tenant's API", func(ctx context.Context) error {
		var err error
		rv, err = kubectlIn(ctx, kc, "", "-n", "data", "get", "configmap", "cm-0001", "-o", "jsonpath={.metadata.resourceVersion}")
		return err
	}, func() string { return clusterState(t) })
	if out, err := tkube(t, kc, "-n", "data", "get", "configmap", "after-backup"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("ConfigMap created after the backup survived the roll back: %s %v", out, err)
	}
	if n := len(names(t, kc, "-n", "data", "get", "configmaps")); n != inBackup {
		t.Errorf("%d ConfigMaps in data after the roll back, %d in the backup", n, inBackup)
	}
	if a, b := atoi(t, rv), atoi(t, seen); a <= b {
		t.Errorf("restored cm-0001 has resourceVersion %d, not above %d seen before the roll back", a, b)
	}

	// Deleting the TenantBackup deletes the archive.
	mustKube(t, "delete", "tenantbackup", "bk-1", "-n", "default", "--wait=true", "--timeout=2m")
	for _, f := range []string{string(tb.UID) + ".kvs.age", string(tb.UID) + ".json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left in %s after the TenantBackup was deleted (%v)", f, dir, err)
		}
	}
}

// operatorLog is the end of the operator's log, for a failure message.
func operatorLog() string {
	out, err := kubectlIn(context.Background(), adminKubeconfig(), "", "logs", "-n", install.Namespace, "deploy/"+install.Name, "--tail=60")
	if err != nil {
		return fmt.Sprintf("(operator log: %v)", err)
	}
	return out
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", s, err)
	}
	return n
}
