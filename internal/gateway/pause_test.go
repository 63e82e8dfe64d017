package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
)

// TestPauseHoldsWritesOnEveryReplica pauses a tenant through one replica's
// admin API while the tenant writes through another: the write waits
// until the pause ends, reads and other tenants pass, a pause that is not
// ended lapses at its deadline, and a stopped replica stops counting.
func TestPauseHoldsWritesOnEveryReplica(t *testing.T) {
	e := newTestEnv(t)
	admin := func(c *gateway.Config) { c.AdminAddress = "127.0.0.1:0" }
	g1 := e.startGateway(t, admin)
	g2 := e.startGateway(t, admin)
	a, b := datastoretest.TenantA, datastoretest.TenantB
	ctx := context.Background()
	ca2, cb2 := e.tenantClient(t, g2, a.ID), e.tenantClient(t, g2, b.ID)
	if _, err := ca2.Put(ctx, "/registry/x", "before"); err != nil {
		t.Fatal(err)
	}
	ac := e.adminClient(t, g1, e.adminCert(t, gateway.AdminCommonName))

	waitReplicas(t, e.Root, 2)
	ans, err := ac.Pause(ctx, a.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("paused at revision %d after %s", ans.Revision, ans.Took)

	wrote := make(chan error, 1)
	go func() {
		_, err := ca2.Put(ctx, "/registry/x", "during")
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("a write passed the pause (err %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if r, err := ca2.Get(ctx, "/registry/x"); err != nil || string(r.Kvs[0].Value) != "before" {
		t.Fatalf("read during the pause: %v %v", r, err)
	}
	if _, err := cb2.Put(ctx, "/registry/x", "other tenant"); err != nil {
		t.Fatalf("another tenant's write: %v", err)
	}
	if r, _ := e.Root.Get(ctx, "/tenants/"+a.ID+"/registry/x"); r.Header.Revision < ans.Revision || string(r.Kvs[0].Value) != "before" {
		t.Fatalf("the tenant's key changed during the pause: %v", r.Kvs)
	}
	if err := ac.Resume(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("held write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held write did not pass after the resume")
	}

	series := fmt.Sprintf("kubinception_gateway_paused_seconds_total{tenant=%q}", a.ID)
	if got := metric(t, g2, series); got < 0.4 {
		t.Errorf("%s = %v on the replica that held the write, want the time it was held", series, got)
	}

	// A pause nobody ends lapses at its deadline.
	if _, err := ac.Pause(ctx, a.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := ca2.Put(ctx, "/registry/x", "after the deadline"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("a write during a 1s pause took %s", took)
	}
	if err := ac.Resume(ctx, a.ID); err != nil {
		t.Fatal(err)
	}

	// A stopped replica leaves at once; the other alone confirms.
	g2.Stop()
	waitReplicas(t, e.Root, 1)
	if _, err := ac.Pause(ctx, a.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := ac.Resume(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
}

// waitReplicas waits until n gateway replicas are registered.
func waitReplicas(t *testing.T, root *clientv3.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := root.Get(context.Background(), "/kubinception/gateway/replicas/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && r.Count == int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered replicas: %v (err %v), want %d", r, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
