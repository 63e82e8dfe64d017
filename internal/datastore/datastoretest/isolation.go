package datastoretest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
)

// Target is the datastore as tenants reach it.
type Target interface {
	// Root is the platform's own client on the datastore itself.
	Root() *clientv3.Client
	// Tenant returns a client holding what tenant tn's API server holds,
	// and the key under which the tenant's keys appear to that client:
	// the tenant's prefix when it talks to the datastore itself, "" when
	// a gateway maps its keys.
	Tenant(t *testing.T, tn datastore.Tenancy) (*clientv3.Client, string)
	// Guarded says whether the target also refuses what etcd's own
	// authentication lets every user do to the datastore as a whole
	// (list its members, clear its alarms, keep any lease alive): the
	// gateway does, etcd does not.
	Guarded() bool
}

// IsDenied reports whether err is etcd's "permission denied".
func IsDenied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || (err != nil && strings.Contains(err.Error(), "permission denied"))
}

// Tenants A and B of the scenarios.
var (
	TenantA, _ = datastore.TenancyFor("aaaaaaaa-0000-0000-0000-000000000001")
	TenantB, _ = datastore.TenancyFor("aaaaaaaa-0000-0000-0000-000000000002")
)

const (
	secretKey = "/registry/secrets/x"
	secretB   = "b-secret"
)

// RunIsolation checks the tenant wall: tenant A, whatever it sends, can
// neither read nor change what tenant B keeps, nor act on the datastore as
// a whole. Each attempt must either be refused with "permission denied" or
// succeed while staying confined to A's own keys; the datastore's content
// is checked afterwards from the root client.
func RunIsolation(t *testing.T, target Target) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	root := target.Root()
	ca, pa := target.Tenant(t, TenantA)
	cb, pb := target.Tenant(t, TenantB)

	if _, err := ca.Put(ctx, pa+secretKey, "a-secret"); err != nil {
		t.Fatalf("tenant A cannot write its own prefix: %v", err)
	}
	put, err := cb.Put(ctx, pb+secretKey, secretB)
	if err != nil {
		t.Fatalf("tenant B cannot write its own prefix: %v", err)
	}
	before := put.Header.Revision
	if resp, err := ca.Get(ctx, pa, clientv3.WithPrefix()); err != nil || resp.Count != 1 || string(resp.Kvs[0].Value) != "a-secret" {
		t.Fatalf("tenant A reading its own keys: %v %v", resp, err)
	}
	if resp, err := root.Get(ctx, TenantA.Prefix+secretKey); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("tenant A's key is not stored under its prefix %s: %v %v", TenantA.Prefix, resp, err)
	}

	// Reads: refused, or answered with A's keys only.
	for name, key := range map[string][]clientv3.OpOption{
		TenantB.Prefix + secretKey:   nil,
		TenantB.Prefix:               {clientv3.WithPrefix()},
		"/":                          {clientv3.WithPrefix()},
		"":                           {clientv3.WithFromKey()},
		datastore.TenantsPrefix:      {clientv3.WithPrefix()},
		datastore.GatewayPrefix:      {clientv3.WithPrefix()},
		"\x00":                       {clientv3.WithFromKey(), clientv3.WithRev(before)},
		TenantB.Prefix + "/registry": {clientv3.WithPrefix(), clientv3.WithRev(before)},
	} {
		t.Run("tenant A reading "+fmt.Sprintf("%q", name)+" sees nothing of B", func(t *testing.T) {
			resp, err := ca.Get(ctx, name, key...)
			if IsDenied(err) {
				return
			}
			if err != nil {
				t.Fatalf("want permission denied or A's keys only, got %v", err)
			}
			for _, kv := range resp.Kvs {
				if string(kv.Value) == secretB {
					t.Fatalf("tenant A read B's secret at %q", kv.Key)
				}
			}
		})
	}

	// Writes: refused, or confined to A's keys (checked below).
	writes := map[string]func() error{
		"write into B's prefix": func() error { _, err := ca.Put(ctx, TenantB.Prefix+"/registry/secrets/y", "evil"); return err },
		"overwrite B's key":     func() error { _, err := ca.Put(ctx, TenantB.Prefix+secretKey, "evil"); return err },
		"delete B's prefix":     func() error { _, err := ca.Delete(ctx, TenantB.Prefix, clientv3.WithPrefix()); return err },
		"write at the root":     func() error { _, err := ca.Put(ctx, "/x", "evil"); return err },
		"write outside tenants": func() error { _, err := ca.Put(ctx, "/registry/secrets/x", "evil"); return err },
		"write the gateway's records": func() error {
			_, err := ca.Put(ctx, datastore.CompactionKey(TenantB.ID), `{"revision":1}`)
			return err
		},
		"delete everything": func() error { _, err := ca.Delete(ctx, "\x00", clientv3.WithFromKey()); return err },
		"transaction on B's key": func() error {
			_, err := ca.Txn(ctx).If(clientv3.Compare(clientv3.Value(TenantB.Prefix+secretKey), "=", secretB)).
				Then(clientv3.OpPut(TenantB.Prefix+secretKey, "evil")).Else(clientv3.OpGet(TenantB.Prefix + secretKey)).Commit()
			return err
		},
	}
	for name, op := range writes {
		t.Run("tenant A may "+name+" only within its own keys", func(t *testing.T) {
			if err := op(); err != nil && !IsDenied(err) {
				t.Fatalf("want permission denied or success, got %v", err)
			}
		})
	}

	// Calls on the datastore as a whole: always refused.
	for name, op := range map[string]func() error{
		"grant itself a role": func() error { _, err := ca.UserGrantRole(ctx, TenantA.User, "root"); return err },
		"list users":          func() error { _, err := ca.UserList(ctx); return err },
		"add a user":          func() error { _, err := ca.UserAdd(ctx, "intruder", "x"); return err },
		"disable auth":        func() error { _, err := ca.AuthDisable(ctx); return err },
		"defragment":          func() error { _, err := ca.Defragment(ctx, ca.Endpoints()[0]); return err },
		"hash the store":      func() error { _, err := ca.HashKV(ctx, ca.Endpoints()[0], 0); return err },
		"take a snapshot": func() error {
			rc, err := ca.Snapshot(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = rc.Read(make([]byte, 1))
			return err
		},
	} {
		t.Run("tenant A may not "+name, func(t *testing.T) {
			if err := op(); !IsDenied(err) {
				t.Fatalf("want permission denied, got %v", err)
			}
		})
	}

	// Compaction: A may compact at most its own history; B's stays.
	if _, err := ca.Compact(ctx, before+1); err != nil && !IsDenied(err) {
		t.Fatalf("tenant A compacting: want permission denied or success, got %v", err)
	}
	if resp, err := cb.Get(ctx, pb+secretKey, clientv3.WithRev(before)); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("tenant A's compaction took B's history: %v %v", resp, err)
	}
	if _, err := root.Get(ctx, TenantB.Prefix+secretKey, clientv3.WithRev(before)); err != nil {
		t.Fatalf("tenant A's compaction compacted the datastore: %v", err)
	}

	// Leases: B's lease, with a key attached, is out of A's reach.
	lease, err := cb.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("tenant B granting a lease: %v", err)
	}
	if _, err := cb.Put(ctx, pb+"/registry/leased", "b", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("tenant B attaching a key to its lease: %v", err)
	}
	for name, op := range map[string]func() error{
		"revoke B's lease":        func() error { _, err := ca.Revoke(ctx, lease.ID); return err },
		"read B's lease and keys": func() error { _, err := ca.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys()); return err },
		"attach a key to B's lease": func() error {
			_, err := ca.Put(ctx, pa+"/registry/mine", "a", clientv3.WithLease(lease.ID))
			return err
		},
	} {
		t.Run("tenant A may not "+name, func(t *testing.T) {
			if err := op(); !IsDenied(err) {
				t.Fatalf("want permission denied, got %v", err)
			}
		})
	}
	for name, op := range map[string]func() error{
		"clear alarms": func() error {
			_, err := ca.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: etcdserverpb.AlarmType_NOSPACE})
			return err
		},
		"list members":         func() error { _, err := ca.MemberList(ctx); return err },
		"move the leader":      func() error { _, err := ca.MoveLeader(ctx, 1); return err },
		"keep B's lease alive": func() error { _, err := ca.KeepAliveOnce(ctx, lease.ID); return err },
	} {
		t.Run("tenant A may not "+name, func(t *testing.T) {
			err := op()
			switch {
			case IsDenied(err):
			case target.Guarded():
				t.Fatalf("want permission denied, got %v", err)
			default:
				t.Logf("etcd's own authentication lets a tenant %s (answer: %v): one reason tenants go through the gateway", name, err)
			}
		})
	}
	t.Run("tenant A does not see B's leases", func(t *testing.T) {
		resp, err := ca.Leases(ctx)
		if IsDenied(err) {
			return
		}
		if err != nil {
			t.Fatalf("want permission denied or A's leases only, got %v", err)
		}
		for _, l := range resp.Leases {
			if l.ID == lease.ID {
				t.Fatalf("tenant A lists B's lease %x", lease.ID)
			}
		}
	})
	if ttl, err := cb.TimeToLive(ctx, lease.ID); err != nil || ttl.TTL <= 0 {
		t.Fatalf("tenant B's lease was touched: %v %v", ttl, err)
	}

	// B's keys are exactly what B wrote; nothing lies outside the tenants'
	// prefixes but the gateway's records.
	resp, err := root.Get(ctx, TenantB.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	want := map[string]string{TenantB.Prefix + secretKey: secretB, TenantB.Prefix + "/registry/leased": "b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tenant B's keys = %v, want %v", got, want)
	}
	all, err := root.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		k := string(kv.Key)
		if !strings.HasPrefix(k, datastore.TenantsPrefix) && !strings.HasPrefix(k, datastore.GatewayPrefix) {
			t.Errorf("key %q lies outside every tenant's prefix", k)
		}
		if strings.HasPrefix(k, datastore.CompactionKey(TenantB.ID)) {
			t.Errorf("tenant A wrote the gateway's record of B's compactions")
		}
	}
}
