package gateway_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
)

// TestForwardMovedTenant moves a tenant between two datastores' gateways:
// a write held by the pause and every call after the move reach the
// destination, and a watch open before the move is ended and, reopened,
// watches the destination.
func TestForwardMovedTenant(t *testing.T) {
	src, dst := newTestEnv(t), newTestEnv(t)
	gs, gd := src.startGateway(t, nil), dst.startGateway(t, nil)
	a := datastoretest.TenantA
	ctx := context.Background()
	cli := src.tenantClient(t, gs, a.ID)
	if _, err := cli.Put(ctx, "/registry/x", "on the source"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, "/registry/", clientv3.WithPrefix())

	waitReplicas(t, src.Root, 1)
	if _, err := gateway.PauseTenant(ctx, src.Root, a.ID, time.Minute, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := cli.Put(ctx, "/registry/y", "held, then forwarded")
		held <- err
	}()
	time.Sleep(200 * time.Millisecond)
	// The migration would copy the keys now; here the destination gets
	// one key of its own to tell it apart.
	if _, err := dst.Root.Put(ctx, "/tenants/"+a.ID+"/registry/x", "on the destination"); err != nil {
		t.Fatal(err)
	}
	kp := dst.tenantCert(t, a.ID)
	to := gateway.ForwardTarget{Endpoint: gd.Addr(), CAPEM: dst.TenantCA.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM}
	if err := gateway.ForwardTenant(ctx, src.Root, a.ID, to, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("held write: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held write was not forwarded")
	}
	r, err := dst.Root.Get(ctx, "/tenants/"+a.ID+"/registry/y")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("the held write is not on the destination: %v %v", r, err)
	}
	if r, _ := src.Root.Get(ctx, "/tenants/"+a.ID+"/registry/y"); len(r.Kvs) != 0 {
		t.Fatal("the held write reached the source")
	}
	got, err := cli.Get(ctx, "/registry/x")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "on the destination" {
		t.Fatalf("read after the move: %v %v", got, err)
	}
	// The watch opened before the move now watches the destination.
	if _, err := dst.Root.Put(ctx, "/tenants/"+a.ID+"/registry/z", "after"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case resp := <-wch:
			for _, ev := range resp.Events {
				if string(ev.Kv.Key) == "/registry/z" {
					return
				}
			}
			if resp.Err() != nil {
				t.Logf("watch: %v", resp.Err())
			}
		case <-deadline:
			t.Fatal("the watch did not see the write on the destination")
		}
	}
}
