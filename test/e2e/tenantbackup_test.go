package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestTenantBackup backs up a tenant holding 1,000 ConfigMaps while a
// client keeps writing to it, with the CLI, through the operator and the
// gateway's admin API, into an S3-compatible server (versitygw, built from
// source) that the test runs on the admin node's address. The archive,
// decrypted with the key the operator keeps, restores into a scratch
// prefix of the datastore exactly the tenant's keys at the backup's
// revision. Cloned into a new tenant, it gives that tenant the same
// objects. Rolled back to it, the tenant loses what was created after it
// and gets back what was deleted, with resourceVersions that only go up,
// and the Deployment on its joined node returns to the backup's replicas.
// Deleting the TenantBackup deletes the archive's objects. Meanwhile a
// schedule of every minute, keep 1, backs the tenant up into the admin
// cluster's backup directory and prunes the older backup once a newer one
// completed.
func TestTenantBackup(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "bk"
	// The S3 server, on the node address the operator's pod reaches, and
	// the operator installed with it; both go after everything else.
	srv := testenv.StartS3Server(t, config(t).NodeIP.String(), "e2e-backups")
	c := adminClient(t)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: install.Namespace, Name: backupcontroller.DefaultS3CredentialsSecret},
		Data: map[string][]byte{backupcontroller.S3AccessKeyID: []byte(srv.AccessKeyID), backupcontroller.S3SecretAccessKey: []byte(srv.SecretAccessKey)}}
	err := c.Create(t.Context(), creds)
	if apierrors.IsAlreadyExists(err) {
		// Left by an interrupted run, with that run's server's keys.
		err = c.Update(t.Context(), creds)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		reinstall(t)
		_, _ = kubectlIn(context.Background(), adminKubeconfig(), "", "delete", "secret", "-n", install.Namespace, backupcontroller.DefaultS3CredentialsSecret, "--ignore-not-found")
	})
	reinstall(t, "--backup-s3-endpoint", srv.Endpoint, "--backup-s3-bucket", "e2e-backups", "--backup-s3-prefix", "e2e/")
	t.Cleanup(func() { removeTenants(t, name) })
	// Backups outlive their cluster: the test stops the schedule and
	// removes them (and their archives, while both targets are there).
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = kubectlIn(ctx, adminKubeconfig(), "", "patch", "tenantcluster", name, "-n", "default", "--type=json", "-p", `[{"op":"remove","path":"/spec/backup"}]`)
		_, _ = kubectlIn(ctx, adminKubeconfig(), "", "delete", "tenantbackups", "-n", "default", "-l", kv1.LabelBackupSchedule+"="+name, "--wait=true", "--timeout=2m")
		_, _ = kubectlIn(ctx, adminKubeconfig(), "", "delete", "tenantbackup", "bk-1", "-n", "default", "--ignore-not-found", "--wait=true", "--timeout=2m")
	})
	if r := run(t, "create", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster:\n%s", r)
	}
	tc := waitTenantReady(t, name)

	// The API refuses a bad schedule naming the field; a good one starts.
	for _, bad := range []struct{ patch, want string }{
		{`{"spec":{"backup":{"schedule":"every minute","keep":1}}}`, "spec.backup.schedule must be a cron expression"},
		{`{"spec":{"backup":{"schedule":"* * * * *"}}}`, "spec.backup: give keep, maxAge or both"},
		{`{"spec":{"backup":{"schedule":"* * * * *","maxAge":"10s"}}}`, "spec.backup.maxAge must be at least 1m"},
	} {
		if out, err := kube(t, "patch", "tenantcluster", name, "-n", "default", "--type=merge", "-p", bad.patch); err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("patch %s: %v\n%s", bad.patch, err, out)
		}
	}
	mustKube(t, "patch", "tenantcluster", name, "-n", "default", "--type=merge", "-p", `{"spec":{"backup":{"schedule":"* * * * *","keep":1,"target":"Volume"}}}`)
	kc := tenantKubeconfig(t, name)
	// A worker joins while the ConfigMaps are written.
	joined := make(chan result, 1)
	go func() { joined <- run(t, "node", "add", name, "--kubeconfig", adminKubeconfig(), "--root", root) }()
	mustTkube(t, kc, "create", "namespace", "data")
	mustTkube(t, kc, "-n", "data", "create", "secret", "generic", "keep", "--from-literal=k=stored-encrypted")
	for batch := range 4 {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
		for i := range 250 {
			fmt.Fprintf(&b, "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm-%04d, namespace: data}\n  data: {v: %q}\n", batch*250+i, strings.Repeat("d", 200))
		}
		mustApply(t, kc, b.String())
	}

	if r := <-joined; r.err != nil {
		t.Fatalf("node add %s:\n%s\n%s", name, r, clusterState(t))
	}
	runWorkload(t, kc, 2)

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
	r := run(t, "backup", "create", name, "--name", "bk-1", "--target", "s3", "--kubeconfig", adminKubeconfig())
	writesBefore := writes.Load()
	eventually(t, time.Minute, "writes after the backup", func(context.Context) error {
		if writes.Load() < writesBefore+2 {
			return fmt.Errorf("%d writes", writes.Load())
		}
		return nil
	})
	stop()
	wg.Wait()
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
	if list := run(t, "backup", "list", name, "--kubeconfig", adminKubeconfig()); list.err != nil || !strings.Contains(list.stdout, "bk-1") || !strings.Contains(list.stdout, "Completed") || !strings.Contains(list.stdout, "S3") {
		t.Errorf("backup list:\n%s", list)
	}
	if want := "s3://e2e-backups/e2e/" + string(tb.UID); tb.Status.Target != kv1.BackupTargetS3 || tb.Status.Location != want {
		t.Errorf("target %q, location %q, want S3 and %s", tb.Status.Target, tb.Status.Location, want)
	}

	// The archive, read from the bucket with the operator's key, holds
	// the tenant's keys at the backup's revision and nothing else.
	store, err := backup.NewS3(backup.S3Config{Endpoint: srv.Endpoint, Bucket: "e2e-backups", Prefix: "e2e/", AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	if objs, err := store.List(t.Context(), string(tb.UID)); err != nil || !slices.Contains(objs, string(tb.UID)+".json") || !slices.Contains(objs, string(tb.UID)+".kvs.age") {
		t.Fatalf("objects of bk-1 in the bucket: %q %v", objs, err)
	}
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

	testClone(t, tb, kc, name+"-clone")

	// Roll back: a ConfigMap created after the backup goes, one deleted
	// after it comes back, and every restored object's resourceVersion is
	// above any the tenant's clients saw before.
	inBackup := 0
	for _, kv := range want.Kvs {
		if strings.HasPrefix(string(kv.Key), tc.Status.Datastore.Prefix+"/registry/configmaps/data/") {
			inBackup++
		}
	}
	mustTkube(t, kc, "scale", "deployment/web", "--replicas=3")
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
	workloadRecovered(t, kc)

	// Deleting the TenantBackup deletes the archive's objects.
	mustKube(t, "delete", "tenantbackup", "bk-1", "-n", "default", "--wait=true", "--timeout=2m")
	if objs, err := store.List(t.Context(), string(tb.UID)); err != nil || len(objs) != 0 {
		t.Errorf("objects left in the bucket after the TenantBackup was deleted: %q %v", objs, err)
	}

	checkScheduledBackups(t, name)
}

// checkScheduledBackups waits until the per-minute schedule (keep 1) has
// made at least two backups and pruned every one but the newest
// completed: status names it and the next slot, the directory holds its
// archive, and the pruned ones are gone with theirs.
func checkScheduledBackups(t *testing.T, cluster string) {
	t.Helper()
	c := adminClient(t)
	dir := filepath.Join(root, "backups")
	var made, pruned []string
	var st *kv1.TenantBackupScheduleStatus
	eventually(t, 3*time.Minute, "two scheduled backups, the older pruned", func(ctx context.Context) error {
		made, pruned = clusterEvents(ctx, cluster, "ScheduledBackup"), clusterEvents(ctx, cluster, "BackupPruned")
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: cluster}, tc); err != nil {
			return err
		}
		st = tc.Status.Backup
		switch {
		case len(made) < 2:
			return fmt.Errorf("scheduled backups made: %q", made)
		case len(pruned) == 0:
			return fmt.Errorf("made %q, none pruned yet", made)
		case st == nil || st.LastSuccessfulBackup == "" || st.NextScheduleTime == nil:
			return fmt.Errorf("status.backup: %+v", st)
		}
		list := &kv1.TenantBackupList{}
		if err := c.List(ctx, list, client.InNamespace("default"), client.MatchingLabels{kv1.LabelBackupSchedule: cluster}); err != nil {
			return err
		}
		completed := 0
		for _, b := range list.Items {
			if b.Status.Phase == kv1.BackupCompleted && b.DeletionTimestamp.IsZero() {
				completed++
			}
		}
		if completed != 1 {
			return fmt.Errorf("%d completed scheduled backups kept, keep is 1", completed)
		}
		return nil
	}, func() string {
		return mustKube(t, "get", "tenantbackups", "-n", "default", "-o", "wide") + "\n" + operatorLog()
	})
	for _, p := range pruned {
		name := p[strings.Index(p, "scheduled backup ")+len("scheduled backup "):]
		name = strings.Fields(name)[0]
		err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: name}, &kv1.TenantBackup{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("pruned backup %s is still there (%v)", name, err)
		}
	}
	kept := &kv1.TenantBackup{}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: st.LastSuccessfulBackup}, kept); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, string(kept.UID)+".kvs.age")); err != nil || kept.Status.Target != kv1.BackupTargetVolume {
		t.Errorf("the kept scheduled backup %s (target %q): archive %v", kept.Name, kept.Status.Target, err)
	}
	if !st.NextScheduleTime.After(time.Now().Add(-time.Minute)) {
		t.Errorf("next slot %v is in the past", st.NextScheduleTime)
	}
	t.Logf("schedule: made %d backups (%q), pruned %d; kept %s", len(made), made, len(pruned), st.LastSuccessfulBackup)
}

// clusterEvents are the messages of a TenantCluster's events of reason.
func clusterEvents(ctx context.Context, cluster, reason string) []string {
	out, err := kubectlIn(ctx, adminKubeconfig(), "", "get", "events", "-n", "default", "--field-selector", "involvedObject.kind=TenantCluster,involvedObject.name="+cluster+",reason="+reason,
		"-o", `jsonpath={range .items[*]}{.message}{"\n"}{end}`)
	if err != nil {
		return nil
	}
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			msgs = append(msgs, l)
		}
	}
	return msgs
}

// reinstall installs the operator again with extra flags and waits until
// only its new pod runs, so no request meets the old one. It also runs
// in a cleanup, where the test's context is over.
func reinstall(t *testing.T, flags ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if r := runCmd(exec.CommandContext(ctx, bin, append([]string{"install", "--kubeconfig", adminKubeconfig(), "--root", root}, flags...)...)); r.err != nil {
		t.Fatalf("install %q:\n%s", flags, r)
	}
	if out, err := kubectlIn(ctx, adminKubeconfig(), "", "rollout", "status", "deployment/"+install.Name, "-n", install.Namespace, "--timeout=3m"); err != nil {
		t.Fatalf("the operator's rollout after install %q: %v\n%s", flags, err, out)
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
