package gateway_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestKubeAPIServer runs a real kube-apiserver, with its default
// --etcd-prefix=/registry and its own compactor, on tenant A's view through
// the gateway.
func TestKubeAPIServer(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, func(c *gateway.Config) {
		c.Policy = gateway.StaticPolicy{Default: gateway.Limits{QuotaBytes: 1 << 30}}
		c.CompactionInterval = 2 * time.Second
	})
	a := datastoretest.TenantA
	if err := (pki.Dir{Path: e.Dir}).Save("tenant-a", e.tenantCert(t, a.ID)); err != nil {
		t.Fatal(err)
	}
	api := testenv.StartKubeAPIServer(t, testenv.KubeAPIServerOptions{
		EtcdEndpoint: "https://" + g.Addr(),
		EtcdCAFile:   filepath.Join(e.Dir, "tenant-ca.crt"),
		EtcdCertFile: filepath.Join(e.Dir, "tenant-a.crt"),
		EtcdKeyFile:  filepath.Join(e.Dir, "tenant-a.key"),
		Args:         []string{"--etcd-compaction-interval=5s"},
	})
	cs := api.Client

	t.Run("keys land under the tenant's prefix", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := e.Root.Get(ctx, a.Prefix+"/registry/namespaces/default")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("the default namespace is not at %s/registry/namespaces/default: %v %v", a.Prefix, resp, err)
		}
	})

	t.Run("a watch sees every event in order", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		ns := createNamespace(ctx, t, api, "watch")
		list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		// 400 creates, 400 updates, 200 deletes, one after another.
		var want []string
		for i := range 400 {
			name := fmt.Sprintf("cm-%03d", i)
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, "ADDED "+name)
		}
		for i := range 400 {
			name := fmt.Sprintf("cm-%03d", i)
			if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "1"}}, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, "MODIFIED "+name)
		}
		for i := range 200 {
			name := fmt.Sprintf("cm-%03d", 2*i)
			if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, "DELETED "+name)
		}
		var got []string
		var lastRV string
		for len(got) < len(want) {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("the watch ended after %d of %d events", len(got), len(want))
				}
				if ev.Type == watch.Error || ev.Type == watch.Bookmark {
					t.Fatalf("unexpected %s event after %d events: %v", ev.Type, len(got), ev.Object)
				}
				cm := ev.Object.(*corev1.ConfigMap)
				if lastRV != "" && !newer(cm.ResourceVersion, lastRV) {
					t.Fatalf("event %d (%s %s) at resource version %s after %s", len(got), ev.Type, cm.Name, cm.ResourceVersion, lastRV)
				}
				lastRV = cm.ResourceVersion
				got = append(got, string(ev.Type)+" "+cm.Name)
			case <-ctx.Done():
				t.Fatalf("saw %d of %d events", len(got), len(want))
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("event %d is %q, want %q", i, got[i], want[i])
			}
		}
	})

	t.Run("consistent lists are served from the watch cache", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		ns := createNamespace(ctx, t, api, "consistent")
		before := watchCacheReads(ctx, t, api)
		progress := metric(t, g, fmt.Sprintf(`kubinception_gateway_requests_total{method="WatchProgress",tenant=%q}`, a.ID))
		for i := range 5 {
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// Another tenant's write moves the datastore's revision past
			// anything tenant A's watch cache has seen: only a progress
			// notification can tell it that it is up to date.
			if _, err := e.Root.Put(ctx, datastoretest.TenantB.Prefix+"/registry/x", "y"); err != nil {
				t.Fatal(err)
			}
			list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != i+1 {
				t.Fatalf("consistent list %d has %d items, want %d", i, len(list.Items), i+1)
			}
		}
		after := watchCacheReads(ctx, t, api)
		if after-before < 5 {
			t.Errorf("%v consistent reads served by the watch cache without falling back to etcd, want at least 5", after-before)
		}
		if got := metric(t, g, fmt.Sprintf(`kubinception_gateway_requests_total{method="WatchProgress",tenant=%q}`, a.ID)); got <= progress {
			t.Errorf("the API server sent no progress request through the gateway (%v before, %v after)", progress, got)
		}
	})

	t.Run("a continue token expires after compaction", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		ns := createNamespace(ctx, t, api, "continue")
		for i := range 3 {
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		first, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil || first.Continue == "" {
			t.Fatalf("first page: %v, continue %q", err, first.Continue)
		}
		issued := time.Now()
		var last error
		err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			// Writes keep the revision moving, as on a live cluster.
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "tick-"}}, metav1.CreateOptions{}); err != nil {
				return false, err
			}
			_, last = cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1, Continue: first.Continue})
			return apierrors.IsResourceExpired(last) || apierrors.IsGone(last), nil
		})
		if err != nil {
			t.Fatalf("the continue token still worked %v after it was issued (last answer: %v)", time.Since(issued).Round(time.Second), last)
		}
		t.Logf("the continue token expired %v after it was issued: %v", time.Since(issued).Round(time.Second), last)
	})
}

func createNamespace(ctx context.Context, t *testing.T, api *testenv.KubeAPIServer, name string) string {
	t.Helper()
	if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// newer compares resource versions, which etcd-backed API servers make
// from revisions.
func newer(rv, than string) bool {
	if len(rv) != len(than) {
		return len(rv) > len(than)
	}
	return rv > than
}

// watchCacheReads is the API server's count of consistent reads of
// configmaps served by its watch cache without falling back to etcd.
func watchCacheReads(ctx context.Context, t *testing.T, api *testenv.KubeAPIServer) float64 {
	t.Helper()
	raw, err := api.Client.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "apiserver_watch_cache_consistent_read_total{") &&
			strings.Contains(line, `fallback="false"`) && strings.Contains(line, `resource="configmaps"`) && strings.Contains(line, `success="true"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
