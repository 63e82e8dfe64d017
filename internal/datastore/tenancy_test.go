package datastore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/release"
)

// testEtcd is a real etcd process with TLS, client-certificate auth and
// etcd authentication enabled, and the CA to issue client certificates.
type testEtcd struct {
	endpoint string
	ca       *pki.KeyPair
	root     *clientv3.Client
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startEtcd(t *testing.T) *testEtcd {
	t.Helper()
	bin := filepath.Join(components.DefaultCacheDir(), "etcd-"+release.EtcdVersion, "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("etcd is not built (%v): run kubinception build components; this test runs a real etcd", err)
	}
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("test-datastore-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(pki.Spec{CommonName: "etcd", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	d := pki.Dir{Path: dir}
	if err := d.Save("ca", ca); err != nil {
		t.Fatal(err)
	}
	if err := d.Save("server", server); err != nil {
		t.Fatal(err)
	}
	client, peer := freePort(t), freePort(t)
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", client)
	cmd := exec.Command(bin,
		"--name=test", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+endpoint, "--advertise-client-urls="+endpoint,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-cluster=test=http://127.0.0.1:%d", peer),
		"--client-cert-auth", "--trusted-ca-file="+filepath.Join(dir, "ca.crt"),
		"--cert-file="+filepath.Join(dir, "server.crt"), "--key-file="+filepath.Join(dir, "server.key"),
		"--log-level=error")
	logFile, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Logf("etcd log:\n%s", log)
		}
	})
	rootCert, err := ca.Issue(pki.Spec{CommonName: "root", Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	root, err := Connect(Credentials{Endpoints: []string{endpoint}, CAPEM: ca.CertPEM, CertPEM: rootCert.CertPEM, KeyPEM: rootCert.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := root.Status(ctx, endpoint)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	// Enabling is idempotent.
	if err := EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatalf("second EnableAuth: %v", err)
	}
	return &testEtcd{endpoint: endpoint, ca: ca, root: root}
}

// tenantClient connects as the tenant's user, with a certificate whose
// common name is the user, as a tenant API server does.
func (e *testEtcd) tenantClient(t *testing.T, tn Tenancy) *clientv3.Client {
	t.Helper()
	cert, err := e.ca.Issue(pki.Spec{CommonName: tn.User, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Connect(Credentials{Endpoints: []string{e.endpoint}, CAPEM: e.ca.CertPEM, CertPEM: cert.CertPEM, KeyPEM: cert.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func isDenied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || (err != nil && strings.Contains(err.Error(), "permission denied"))
}

func TestTenancyIsolation(t *testing.T) {
	e := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, _ := TenancyFor("aaaaaaaa-0000-0000-0000-000000000001")
	b, _ := TenancyFor("aaaaaaaa-0000-0000-0000-000000000002")
	for _, tn := range []Tenancy{a, b} {
		if err := EnsureTenancy(ctx, e.root, tn); err != nil {
			t.Fatal(err)
		}
		// Repeating changes nothing and fails nothing.
		if err := EnsureTenancy(ctx, e.root, tn); err != nil {
			t.Fatalf("second EnsureTenancy: %v", err)
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

	denied := []struct {
		name string
		op   func() error
	}{
		{"read B's key", func() error { _, err := ca.Get(ctx, b.Prefix+"/registry/secrets/x"); return err }},
		{"list B's prefix", func() error { _, err := ca.Get(ctx, b.Prefix, clientv3.WithPrefix()); return err }},
		{"write into B's prefix", func() error { _, err := ca.Put(ctx, b.Prefix+"/registry/secrets/y", "evil"); return err }},
		{"delete B's prefix", func() error { _, err := ca.Delete(ctx, b.Prefix, clientv3.WithPrefix()); return err }},
		{"read the root /", func() error { _, err := ca.Get(ctx, "/", clientv3.WithPrefix()); return err }},
		{"read everything", func() error { _, err := ca.Get(ctx, "", clientv3.WithFromKey()); return err }},
		{"write at the root", func() error { _, err := ca.Put(ctx, "/x", "evil"); return err }},
		{"write outside /tenants", func() error { _, err := ca.Put(ctx, "/registry/secrets/x", "evil"); return err }},
		{"read /tenants", func() error { _, err := ca.Get(ctx, TenantsPrefix, clientv3.WithPrefix()); return err }},
		{"grant itself a role", func() error { _, err := ca.UserGrantRole(ctx, a.User, "root"); return err }},
		{"list users", func() error { _, err := ca.UserList(ctx); return err }},
	}
	for _, d := range denied {
		t.Run("tenant A may not "+d.name, func(t *testing.T) {
			if err := d.op(); !isDenied(err) {
				t.Fatalf("want permission denied from etcd, got %v", err)
			}
		})
	}
	resp, err := e.root.Get(ctx, b.Prefix+"/registry/secrets/x")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "b-secret" {
		t.Fatalf("tenant B's key changed: %v %v", resp, err)
	}

	u, err := TenantUsage(ctx, e.root, a)
	if err != nil || u.Keys != 1 {
		t.Fatalf("usage of A = %+v, %v; want 1 key", u, err)
	}

	if err := DeleteTenancy(ctx, e.root, a); err != nil {
		t.Fatal(err)
	}
	if err := DeleteTenancy(ctx, e.root, a); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	left, err := e.root.Get(ctx, a.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || left.Count != 0 {
		t.Fatalf("keys left under A's prefix: %v %v", left, err)
	}
	users, err := Tenants(ctx, e.root)
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
		if _, err := TenancyFor(id); err == nil {
			t.Errorf("TenancyFor(%q) accepted", id)
		}
	}
}
