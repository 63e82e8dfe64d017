package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
)

// TestQuota fills tenant A up to a small quota: the write that would go
// over is refused with etcd's own "database space exceeded", updates that
// do not grow and deletes pass, a delete makes room again, and tenant B
// writes normally throughout.
func TestQuota(t *testing.T) {
	e := newTestEnv(t)
	const quota = 64 << 10
	a, b := datastoretest.TenantA, datastoretest.TenantB
	g := e.startGateway(t, func(c *gateway.Config) {
		c.Policy = gateway.StaticPolicy{Default: gateway.Limits{QuotaBytes: quota}, Overrides: map[string]gateway.Limits{b.ID: {QuotaBytes: 1 << 20}}}
	})
	ca, cb := e.tenantClient(t, g, a.ID), e.tenantClient(t, g, b.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	value := strings.Repeat("x", 4000)
	key := func(i int) string { return fmt.Sprintf("/registry/configmaps/default/cm-%03d", i) }
	written := 0
	for ; written < 100; written++ {
		_, err := ca.Put(ctx, key(written), value)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("put %d: %v", written, err)
		}
		// Tenant B is not held back by A's quota.
		if _, err := cb.Put(ctx, key(written), value); err != nil {
			t.Fatalf("tenant B, put %d while A fills its quota: %v", written, err)
		}
	}
	if written == 100 {
		t.Fatalf("100 writes of %d bytes never went over a quota of %d bytes", len(value), quota)
	}
	used, err := datastore.TenantUsage(ctx, e.Root, a)
	if err != nil {
		t.Fatal(err)
	}
	entry := int64(len(a.Prefix) + len(key(0)) + len(value))
	if used.Bytes > quota || used.Bytes+entry <= quota {
		t.Fatalf("refused after %d writes with %d bytes used: a quota of %d bytes should hold exactly the writes that fit (%d bytes each)", written, used.Bytes, quota, entry)
	}
	t.Logf("tenant A: %d writes, %d bytes of %d, then database space exceeded", written, used.Bytes, quota)

	// A transaction that would grow is refused too; one that does not
	// grow (the same size again) passes.
	_, err = ca.Txn(ctx).Then(clientv3.OpPut(key(written), value)).Commit()
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("a growing transaction over quota: want database space exceeded, got %v", err)
	}
	if _, err := ca.Txn(ctx).If(clientv3.Compare(clientv3.Version(key(0)), ">", 0)).Then(clientv3.OpPut(key(0), strings.Repeat("y", len(value)))).Commit(); err != nil {
		t.Fatalf("an update that does not grow, at the quota: %v", err)
	}

	// Deleting makes room; the same write then passes.
	if _, err := ca.Delete(ctx, key(0)); err != nil {
		t.Fatalf("delete at the quota: %v", err)
	}
	if err := eventually(ctx, func() error { _, err := ca.Put(ctx, key(written), value); return err }); err != nil {
		t.Fatalf("write after a delete made room: %v", err)
	}
	if _, err := cb.Put(ctx, "/registry/configmaps/default/after", value); err != nil {
		t.Fatalf("tenant B after A hit its quota: %v", err)
	}
	alarms, err := e.Root.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("the datastore raised alarms: %v %v", alarms, err)
	}
	if got := metric(t, g, fmt.Sprintf(`kubinception_gateway_refused_total{reason="quota",tenant=%q}`, a.ID)); got < 1 {
		t.Errorf("refused writes metric = %v, want at least 1", got)
	}
}

// TestUsageIsExact compares the gateway's usage of a tenant with a direct
// count of its prefix after creates, updates that grow and shrink,
// deletes, transactions and keys that expire with their lease; the same
// usage is what Maintenance.Status reports as the database size, and
// what /usage and /metrics serve.
func TestUsageIsExact(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, func(c *gateway.Config) { c.Policy = gateway.StaticPolicy{Default: gateway.Limits{QuotaBytes: 1 << 30}} })
	a := datastoretest.TenantA
	ca := e.tenantClient(t, g, a.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	check := func(step string) {
		t.Helper()
		var direct datastore.Usage
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			direct, err = datastore.TenantUsage(ctx, e.Root, a)
			if err != nil {
				return false, err
			}
			got := usageOf(g, a.ID)
			return got.Bytes == direct.Bytes && got.Keys == direct.Keys, nil
		})
		if err != nil {
			t.Fatalf("after %s: gateway usage %+v, direct count %+v: %v", step, usageOf(g, a.ID), direct, err)
		}
	}
	for i := range 50 {
		if _, err := ca.Put(ctx, fmt.Sprintf("/registry/pods/ns/p%02d", i), strings.Repeat("v", 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	check("creates")
	for i := range 25 {
		if _, err := ca.Put(ctx, fmt.Sprintf("/registry/pods/ns/p%02d", i), strings.Repeat("w", 10*i)); err != nil {
			t.Fatal(err)
		}
	}
	check("updates")
	if _, err := ca.Delete(ctx, "/registry/pods/ns/p1", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Txn(ctx).Then(clientv3.OpPut("/registry/a", "1"), clientv3.OpDelete("/registry/pods/ns/p20"), clientv3.OpPut("/registry/b", strings.Repeat("2", 500))).Commit(); err != nil {
		t.Fatal(err)
	}
	check("deletes and a transaction")
	lease, err := ca.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := ca.Put(ctx, fmt.Sprintf("/registry/events/ns/e%d", i), strings.Repeat("e", 300), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
	check("keys with a lease")
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := ca.Get(ctx, "/registry/events/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 0, nil
	}); err != nil {
		t.Fatalf("the lease's keys did not expire: %v", err)
	}
	check("the lease expired")

	used := usageOf(g, a.ID)
	st, err := ca.Status(ctx, ca.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSize != used.Bytes || st.DbSizeInUse != used.Bytes || st.DbSizeQuota != 1<<30 || !strings.HasPrefix(st.Version, "3.") {
		t.Errorf("status = size %d, in use %d, quota %d, version %q; want the tenant's %d bytes, quota 1Gi and etcd's version", st.DbSize, st.DbSizeInUse, st.DbSizeQuota, st.Version, used.Bytes)
	}
	var all []gateway.TenantUsage
	if err := json.Unmarshal(httpGet(t, g, "/usage"), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Tenant != a.ID || all[0].Usage != used || all[0].QuotaBytes != 1<<30 {
		t.Errorf("/usage = %+v, want tenant %s with %+v", all, a.ID, used)
	}
	if got := metric(t, g, fmt.Sprintf(`kubinception_gateway_tenant_bytes{tenant=%q}`, a.ID)); int64(got) != used.Bytes {
		t.Errorf("bytes metric = %v, want %d", got, used.Bytes)
	}
}

// usageOf is tenant id's usage as the gateway counts it.
func usageOf(g *runningGateway, id string) gateway.Usage {
	for _, u := range g.Usage() {
		if u.Tenant == id {
			return u.Usage
		}
	}
	return gateway.Usage{}
}

// eventually retries f until it succeeds or ctx ends: the gateway counts a
// delete once its watch shows it.
func eventually(ctx context.Context, f func() error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		last = f()
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %w)", err, last)
	}
	return nil
}

func httpGet(t *testing.T, g *runningGateway, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + g.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, b)
	}
	return b
}

// metric reads one sample from /metrics (0 when absent).
func metric(t *testing.T, g *runningGateway, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(httpGet(t, g, "/metrics")), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return 0
}
