package datastore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/testenv"
)

// testEtcd is a real etcd with TLS, client-certificate auth and etcd
// authentication enabled, and a root client.
type testEtcd struct {
	*testenv.Etcd
	root *clientv3.Client
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	e := testenv.StartEtcd(t)
	root := e.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	// Enabling is idempotent.
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatalf("second datastore.EnableAuth: %v", err)
	}
	return &testEtcd{Etcd: e, root: root}
}

// tenantClient connects as the tenant's user, with a certificate whose
// common name is the user, as a tenant API server does.
func (e *testEtcd) tenantClient(t *testing.T, tn datastore.Tenancy) *clientv3.Client {
	t.Helper()
	return e.Client(t, tn.User)
}

func isDenied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || (err != nil && strings.Contains(err.Error(), "permission denied"))
}

func TestTenancyLifecycle(t *testing.T) {
	e := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, _ := datastore.TenancyFor("aaaaaaaa-0000-0000-0000-000000000001")
	b, _ := datastore.TenancyFor("aaaaaaaa-0000-0000-0000-000000000002")
	for _, tn := range []datastore.Tenancy{a, b} {
		if err := datastore.EnsureTenancy(ctx, e.root, tn); err != nil {
			t.Fatal(err)
		}
		// Repeating changes nothing and fails nothing.
		if err := datastore.EnsureTenancy(ctx, e.root, tn); err != nil {
			t.Fatalf("second datastore.EnsureTenancy: %v", err)
		}
	}
	ca, cb := e.tenantClient(t, a), e.tenantClient(t, b)

	if _, err := ca.Put(ctx, a.Prefix+"/registry/secrets/x", "a-secret"); err != nil {
		t.Fatalf("tenant A cannot write its own prefix: %v", err)
	}
	if _, err := cb.Put(ctx, b.Prefix+"/registry/secrets/x", "b-secret"); err != nil {
		t.Fatalf("tenant B cannot write its own prefix: %v", err)
	}
	if resp, err := ca.Get(ctx, a.Prefix, clientv3.WithPrefix()); err != nil || resp.Count != 1 {
		t.Fatalf("tenant A reading its prefix: count=%v err=%v", resp, err)
	}

	// What tenants may not do is the isolation scenario (isolation_test.go),
	// run against etcd directly and through the gateway.
	if _, err := ca.Get(ctx, b.Prefix, clientv3.WithPrefix()); !isDenied(err) {
		t.Fatalf("tenant A reading B's prefix: want permission denied, got %v", err)
	}
	resp, err := e.root.Get(ctx, b.Prefix+"/registry/secrets/x")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "b-secret" {
		t.Fatalf("tenant B's key changed: %v %v", resp, err)
	}

	u, err := datastore.TenantUsage(ctx, e.root, a)
	if err != nil || u.Keys != 1 {
		t.Fatalf("usage of A = %+v, %v; want 1 key", u, err)
	}

	if err := datastore.DeleteTenancy(ctx, e.root, a); err != nil {
		t.Fatal(err)
	}
	if err := datastore.DeleteTenancy(ctx, e.root, a); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	left, err := e.root.Get(ctx, a.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || left.Count != 0 {
		t.Fatalf("keys left under A's prefix: %v %v", left, err)
	}
	users, err := datastore.Tenants(ctx, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0] != b.User {
		t.Fatalf("tenant users after deleting A = %v, want only %s", users, b.User)
	}
	if _, err := e.root.RoleGet(ctx, a.Role); !errors.Is(err, rpctypes.ErrRoleNotFound) {
		t.Fatalf("A's role still exists: %v", err)
	}
	if _, err := ca.Get(ctx, a.Prefix, clientv3.WithPrefix()); err == nil {
		t.Fatal("A's certificate still reads after its user was deleted")
	}
}

func TestTenancyForRejectsNonUIDs(t *testing.T) {
	for _, id := range []string{"", "short", "aaaaaaaa-0000-0000-0000-00000000000/", strings.Repeat("a", 37)} {
		if _, err := datastore.TenancyFor(id); err == nil {
			t.Errorf("datastore.TenancyFor(%q) accepted", id)
		}
	}
}

// Answering: a datastore that answers, as root and as a tenant whose role
// does not cover the key read, answers; an address nobody serves does
// not, within the caller's deadline.
func TestAnswering(t *testing.T) {
	e := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tn, _ := datastore.TenancyFor("aaaaaaaa-0000-0000-0000-000000000003")
	if err := datastore.EnsureTenancy(ctx, e.root, tn); err != nil {
		t.Fatal(err)
	}
	for name, cli := range map[string]*clientv3.Client{"root": e.root, "a tenant": e.tenantClient(t, tn)} {
		if err := datastore.Answering(ctx, cli); err != nil {
			t.Errorf("%s: the running datastore does not answer: %v", name, err)
		}
	}
	nobody, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer nobody.Close()
	short, cancelShort := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShort()
	if err := datastore.Answering(short, nobody); err == nil {
		t.Fatal("an address nobody serves answers")
	}
}
