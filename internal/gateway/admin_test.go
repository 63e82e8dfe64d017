package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/pki"
)

// adminClient is the gateway's admin API as a holder of kp calls it.
func (e *testEnv) adminClient(t *testing.T, g *runningGateway, kp *pki.KeyPair) *gateway.AdminClient {
	t.Helper()
	tc, err := e.ClientTLS(kp)
	if err != nil {
		t.Fatal(err)
	}
	return gateway.NewAdminClient(g.AdminAddr(), tc)
}

func (e *testEnv) adminCert(t *testing.T, cn string) *pki.KeyPair {
	t.Helper()
	kp, err := e.TenantCA.Issue(pki.Spec{CommonName: cn, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestAdminBackupAndRestore backs a tenant up through the admin API while
// it writes through the gateway, restores it into a second tenant, and
// checks who may call the API: only the admin certificate; a tenant's own
// certificate, another CA's and none are refused.
func TestAdminBackupAndRestore(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, func(c *gateway.Config) { c.AdminAddress = "127.0.0.1:0" })
	a, b := datastoretest.TenantA, datastoretest.TenantB
	ctx := context.Background()
	ca := e.tenantClient(t, g, a.ID)
	for i := range 300 {
		if _, err := ca.Put(ctx, fmt.Sprintf("/registry/configmaps/default/cm-%03d", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	store := backup.Dir{Path: t.TempDir()}

	admin := e.adminClient(t, g, e.adminCert(t, gateway.AdminCommonName))
	m, err := backup.Create(ctx, store, "a-1", admin.Snapshotter(a.ID, id.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Tenant != a.ID || m.Objects != 300 {
		t.Fatalf("manifest = %+v, want 300 objects of tenant %s", m, a.ID)
	}
	// Written after the backup: not in the clone.
	if _, err := ca.Put(ctx, "/registry/configmaps/default/late", "x"); err != nil {
		t.Fatal(err)
	}
	res, err := backup.RestoreFrom(ctx, store, "a-1", admin.Restorer(b.ID, id, backup.IntoEmpty))
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 300 {
		t.Fatalf("restore wrote %d objects, want 300", res.Objects)
	}
	cb := e.tenantClient(t, g, b.ID)
	got, err := cb.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want, err := ca.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(m.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != len(want.Kvs) {
		t.Fatalf("tenant B holds %d keys after the restore, A held %d at the backup", len(got.Kvs), len(want.Kvs))
	}
	for i := range want.Kvs {
		if string(got.Kvs[i].Key) != string(want.Kvs[i].Key) || string(got.Kvs[i].Value) != string(want.Kvs[i].Value) {
			t.Fatalf("key %d: got %s, want %s", i, got.Kvs[i].Key, want.Kvs[i].Key)
		}
	}
	// Restoring again into B, now not empty, is refused.
	if _, err := backup.RestoreFrom(ctx, store, "a-1", admin.Restorer(b.ID, id, backup.IntoEmpty)); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("second restore into B: got %v, want ErrNotEmpty", err)
	}

	// Who may call it.
	refused := map[string]*gateway.AdminClient{
		"tenant A's own certificate":          e.adminClient(t, g, e.tenantCert(t, a.ID)),
		"a tenant-CA certificate of any name": e.adminClient(t, g, e.adminCert(t, "kubinception:gateway")),
	}
	for name, c := range refused {
		_, err := c.Snapshotter(a.ID, id.Recipient())(ctx, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: backup got %v, want 403", name, err)
		}
	}
	foreign := e.Etcd.ClientCert(t, gateway.AdminCommonName)
	if _, err := e.adminClient(t, g, foreign).Snapshotter(a.ID, id.Recipient())(ctx, &strings.Builder{}); err == nil {
		t.Error("a certificate from another CA (the datastore's) with the admin name was accepted")
	}
	noCert := gateway.NewAdminClient(g.AdminAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test checks the server refuses a client without a certificate
	if _, err := noCert.Snapshotter(a.ID, id.Recipient())(ctx, &strings.Builder{}); err == nil {
		t.Error("a client without a certificate was accepted")
	}
	// An unknown tenant ID is refused with a message naming it.
	if _, err := admin.Snapshotter("not-a-uid", id.Recipient())(ctx, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "not a UID") {
		t.Errorf("backup of an invalid tenant ID: %v", err)
	}
}
