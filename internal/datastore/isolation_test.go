package datastore_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/testenv"
)

// directTarget is the datastore reached directly: each tenant is an etcd
// user whose role allows read-write on its prefix only, authenticated by
// a client certificate from the datastore's CA.
type directTarget struct {
	e    *testenv.Etcd
	root *clientv3.Client
}

func (d *directTarget) Root() *clientv3.Client { return d.root }

func (d *directTarget) Guarded() bool { return false }

func (d *directTarget) Tenant(t *testing.T, tn datastore.Tenancy) (*clientv3.Client, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := datastore.EnsureTenancy(ctx, d.root, tn); err != nil {
		t.Fatal(err)
	}
	return d.e.Client(t, tn.User), tn.Prefix
}

// TestIsolationDirect runs the isolation scenario against etcd's own
// authentication, as tenants reached the datastore before the gateway.
func TestIsolationDirect(t *testing.T) {
	e := testenv.StartEtcd(t)
	root := e.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	datastoretest.RunIsolation(t, &directTarget{e: e, root: root})
}
