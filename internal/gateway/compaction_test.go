package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
)

// TestCompaction checks that a tenant's compaction moves that tenant's
// view of history only (reads and watches below it are compacted, for it
// alone), that a second gateway replica answers alike, and that the
// datastore is compacted at the lowest revision every compacting tenant
// asked for.
func TestCompaction(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, nil)
	a, b := datastoretest.TenantA, datastoretest.TenantB
	ca, cb := e.tenantClient(t, g, a.ID), e.tenantClient(t, g, b.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var revs, revsB []int64
	for _, v := range []string{"1", "2", "3"} {
		resp, err := ca.Put(ctx, "/registry/k", v)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
		if resp, err = cb.Put(ctx, "/registry/k", v); err != nil {
			t.Fatal(err)
		}
		revsB = append(revsB, resp.Header.Revision)
	}
	if _, err := ca.Compact(ctx, revs[1]); err != nil {
		t.Fatalf("tenant A compacting at %d: %v", revs[1], err)
	}
	if _, err := ca.Compact(ctx, revs[1]); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("compacting again at the same revision: want compacted, got %v", err)
	}
	if _, err := ca.Compact(ctx, revs[2]+1000); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("compacting at a future revision: want future revision, got %v", err)
	}

	// A second replica shares the records.
	g2 := e.startGateway(t, nil)
	ca2 := e.tenantClient(t, g2, a.ID)
	for name, cli := range map[string]*clientv3.Client{"this replica": ca, "another replica": ca2} {
		if _, err := cli.Get(ctx, "/registry/k", clientv3.WithRev(revs[0])); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Errorf("%s: tenant A reading below its compaction: want compacted, got %v", name, err)
		}
		if resp, err := cli.Get(ctx, "/registry/k", clientv3.WithRev(revs[1])); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
			t.Errorf("%s: tenant A reading at its compaction: %v %v", name, resp, err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		wr := <-cli.Watch(wctx, "/registry/k", clientv3.WithRev(revs[0]))
		wcancel()
		if wr.CompactRevision != revs[1] {
			t.Errorf("%s: watching from below the compaction: compact revision %d (err %v), want %d", name, wr.CompactRevision, wr.Err(), revs[1])
		}
		wctx, wcancel = context.WithCancel(ctx)
		wr = <-cli.Watch(wctx, "/registry/k", clientv3.WithRev(revs[1]))
		wcancel()
		if len(wr.Events) == 0 || string(wr.Events[0].Kv.Value) != "2" {
			t.Errorf("%s: watching from the compaction: %+v (err %v)", name, wr.Events, wr.Err())
		}
	}
	// Tenant B's history is untouched, and so is the datastore.
	if resp, err := cb.Get(ctx, "/registry/k", clientv3.WithRev(revsB[0])); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
		t.Fatalf("tenant B reading its history: %v %v", resp, err)
	}
	if _, err := e.Root.Get(ctx, "/", clientv3.WithRev(revs[0])); err != nil {
		t.Fatalf("the datastore was compacted though tenant B never asked: %v", err)
	}

	// Once B compacts too, a gateway compacting the datastore does so at
	// the lowest revision the two asked for.
	if _, err := cb.Compact(ctx, revsB[2]); err != nil {
		t.Fatal(err)
	}
	e.startGateway(t, func(c *gateway.Config) { c.CompactionInterval = 100 * time.Millisecond })
	var last error
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = e.Root.Get(ctx, "/", clientv3.WithRev(revs[1]-1))
		return errors.Is(last, rpctypes.ErrCompacted), nil
	}); err != nil {
		t.Fatalf("the datastore was not compacted at %d: %v", revs[1], last)
	}
	if _, err := e.Root.Get(ctx, "/", clientv3.WithRev(revs[1])); err != nil {
		t.Fatalf("the datastore was compacted past %d, the lowest revision asked for: %v", revs[1], err)
	}
}
