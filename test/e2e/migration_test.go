package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/migration"
)

// TestMigration moves a tenant that is written to and watched from the
// default datastore to a second one (admin up --datastores 2), killing
// the operator half-way, and back again. After each move every
// acknowledged write is there, the watcher never saw a resourceVersion go
// backwards, the write pause is measured, and once the control plane has
// rolled onto the new datastore's gateway nothing of the tenant is left
// in the datastore it left, not even its move record.
func TestMigration(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const second, name = "datastore-2", "mig"
	if r := run(t, "admin", "up", "--datastores", "2"); r.err != nil {
		t.Fatalf("admin up --datastores 2:\n%s", r)
	}
	if r := run(t, "install", "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("install with a second datastore:\n%s", r)
	}
	// Cleanups run after the test's context is canceled: their commands
	// have contexts of their own.
	t.Cleanup(func() {
		removeTenants(t, name)
		cleanupKubectl(t, adminKubeconfig(), "delete", "datastore", second, "--wait=true", "--timeout=2m")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if r := runCmd(exec.CommandContext(ctx, bin, withRoot([]string{"admin", "up", "--datastores", "1"})...)); r.err != nil {
			t.Errorf("cleanup: admin up --datastores 1:\n%s", r)
		}
	})
	c := adminClient(t)
	eventually(t, 3*time.Minute, "the gateway of Datastore "+second, func(ctx context.Context) error {
		ds := &kv1.Datastore{}
		if err := c.Get(ctx, types.NamespacedName{Name: second}, ds); err != nil {
			return err
		}
		if ds.Status.Gateway.Endpoint == "" {
			return fmt.Errorf("no gateway endpoint yet: %+v", ds.Status.Conditions)
		}
		return nil
	})
	createTenants(t, name)
	tc := waitTenantReady(t, name)
	kc := tenantKubeconfig(t, name)
	mustTkube(t, kc, "create", "namespace", "data")
	tn, err := datastore.TenancyFor(string(tc.UID))
	if err != nil {
		t.Fatal(err)
	}

	// There, killing the operator on the way, and back.
	for _, step := range []struct {
		from, to string
		kill     bool
	}{{"default", second, true}, {second, "default", false}} {
		t.Logf("moving %s from %s to %s (kill the operator: %v)", name, step.from, step.to, step.kill)
		w := startTenantWriter(t, kc, step.to)
		time.Sleep(3 * time.Second)
		start := time.Now()
		mustKube(t, "patch", "tenantcluster", name, "-n", "default", "--type=merge", "-p", fmt.Sprintf(`{"spec":{"datastore":{"name":%q}}}`, step.to))
		if step.kill {
			killed := ""
			eventually(t, time.Minute, "the migration to start", func(ctx context.Context) error {
				tc, err := getTenant(ctx, c, name)
				if err != nil {
					return err
				}
				m := tc.Status.Migration
				if m == nil || m.Destination != step.to || migration.Phase(m.Phase).Done() {
					return fmt.Errorf("migration %+v", m)
				}
				killed = string(m.Phase)
				return nil
			})
			mustKube(t, "-n", install.Namespace, "delete", "pod", "-l", "app.kubernetes.io/name="+install.Name, "--grace-period=0", "--force", "--wait=false")
			t.Logf("killed the operator in phase %s", killed)
		}
		var m *kv1.TenantMigrationStatus
		eventually(t, 5*time.Minute, "the move to "+step.to, func(ctx context.Context) error {
			tc, err := getTenant(ctx, c, name)
			if err != nil {
				return err
			}
			m = tc.Status.Migration
			switch {
			case m == nil || m.Destination != step.to:
				return fmt.Errorf("migration %+v", m)
			case m.Phase == kv1.MigrationPhase(migration.PhaseRolledBack) && !step.kill:
				return stopWaiting("rolled back: %s", m.Message)
			case m.Phase != kv1.MigrationPhase(migration.PhaseCompleted) || tc.Status.Datastore.Name != step.to:
				return fmt.Errorf("phase %s (%s), serving %s", m.Phase, m.Message, tc.Status.Datastore.Name)
			}
			return nil
		}, operatorLog)
		took := time.Since(start)
		// Writes go on through the control plane's rollout onto the new
		// datastore's gateway, after which the source stops forwarding.
		eventually(t, 5*time.Minute, "the release of "+step.from, func(ctx context.Context) error {
			tc, err := getTenant(ctx, c, name)
			if err != nil {
				return err
			}
			if tc.Status.Migration.ReleaseTime == nil {
				return fmt.Errorf("not released: %+v", tc.Status.Migration)
			}
			return nil
		}, operatorLog)
		acked, failed, slowest := w.stop(t)
		var held time.Duration
		if m.Pause != nil {
			held = m.Pause.Duration
		}
		t.Logf("moved to %s in %s (attempt %d): %d keys copied at revision %d, writes held %s, destination starts at revision %d; writer: %d acknowledged, %d failed, slowest %s; watcher: %d events, %d lists, last resourceVersion %d",
			step.to, took.Round(time.Millisecond), m.Attempts, m.Keys, m.CopyRevision, held, m.SwitchRevision,
			len(acked), failed, slowest.Round(time.Millisecond), w.events, w.lists, w.last)
		if len(w.backwards) > 0 {
			t.Errorf("resourceVersions went backwards for the watcher: %v", w.backwards)
		}
		if m.Pause == nil || m.Pause.Duration > 10*time.Second {
			t.Errorf("writes held %v", m.Pause)
		}
		// Every acknowledged write is in the tenant's API.
		got := map[string]bool{}
		out := mustTkube(t, kc, "get", "configmaps", "-n", "data", "-o", "jsonpath={.items[*].metadata.name}")
		for _, n := range strings.Fields(out) {
			got[n] = true
		}
		for _, n := range acked {
			if !got[n] {
				t.Errorf("acknowledged write %s is missing after the move", n)
			}
		}
		// One datastore holds the tenant: the one it moved to.
		if n := countKeys(t, c, step.from, tn.Prefix); n != 0 {
			t.Errorf("Datastore %s still holds %d of the tenant's keys", step.from, n)
		}
		if n := countKeys(t, c, step.from, datastore.PauseKey(tn.ID)); n != 0 {
			t.Errorf("Datastore %s still holds the tenant's move record after the release", step.from)
		}
		if n := countKeys(t, c, step.to, tn.Prefix); n < int64(len(acked)) {
			t.Errorf("Datastore %s holds %d of the tenant's keys, fewer than the %d acknowledged writes", step.to, n, len(acked))
		}
		mustTkube(t, kc, "get", "--raw", "/readyz")
	}
}

// countKeys counts the keys under prefix in a Datastore, read with the
// operator's credential.
func countKeys(t *testing.T, c client.Reader, ds, prefix string) int64 {
	t.Helper()
	d := &kv1.Datastore{}
	if err := c.Get(t.Context(), types.NamespacedName{Name: ds}, d); err != nil {
		t.Fatal(err)
	}
	access, err := datastore.LoadAccess(t.Context(), c, d)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := datastore.Connect(access.Credentials)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return r.Count
}

// tenantWriter creates ConfigMaps in the tenant continuously and watches
// them as a reflector does (list, watch from the list's resourceVersion,
// list again when the watch ends), recording any resourceVersion lower
// than one seen before.
type tenantWriter struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	acked     []string
	failed    int
	slowest   time.Duration
	last      int64
	backwards []string
	events    int
	lists     int
}

func startTenantWriter(t *testing.T, kubeconfig, tag string) *tenantWriter {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 100, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &tenantWriter{cancel: cancel}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("to-%s-%05d", tag, i)
			start := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := cs.CoreV1().ConfigMaps("data").Create(rctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": name}}, metav1.CreateOptions{})
			rcancel()
			took := time.Since(start)
			w.mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					w.failed++
				}
			} else {
				w.acked = append(w.acked, name)
				w.slowest = max(w.slowest, took)
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	see := func(what, rv string, strict bool) {
		v, err := strconv.ParseInt(rv, 10, 64)
		if err != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if v < w.last || (strict && v == w.last) {
			w.backwards = append(w.backwards, fmt.Sprintf("%s at %d after %d", what, v, w.last))
		}
		w.last = max(w.last, v)
	}
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			list, err := cs.CoreV1().ConfigMaps("data").List(ctx, metav1.ListOptions{})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			see("list", list.ResourceVersion, false)
			w.mu.Lock()
			w.lists++
			w.mu.Unlock()
			wi, err := cs.CoreV1().ConfigMaps("data").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			if err != nil {
				continue
			}
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				if cm, ok := ev.Object.(*corev1.ConfigMap); ok {
					see(string(ev.Type)+" "+cm.Name, cm.ResourceVersion, ev.Type != watch.Deleted)
					w.mu.Lock()
					w.events++
					w.mu.Unlock()
				}
			}
			wi.Stop()
		}
	}()
	return w
}

// stop ends the writer and watcher and returns the acknowledged writes.
func (w *tenantWriter) stop(t *testing.T) ([]string, int, time.Duration) {
	t.Helper()
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.failed, w.slowest
}
