package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"

	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/testenv"
)

// tenantSource confines a root datastore client to one tenant, the way the
// gateway does.
func tenantSource(t *testing.T, cli *clientv3.Client, id string) backup.Source {
	t.Helper()
	tn, err := datastore.TenancyFor(id)
	if err != nil {
		t.Fatal(err)
	}
	return backup.Source{TenantID: id, KV: namespace.NewKV(cli.KV, tn.Prefix), Lease: namespace.NewLease(cli.Lease, tn.Prefix)}
}

func tenantID(n int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", n) }

func newKey(t *testing.T) (*age.X25519Identity, age.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient()
}

// contents is every key and value of a tenant, at rev (0: now).
func contents(t *testing.T, kv clientv3.KV, rev int64) map[string]string {
	t.Helper()
	opts := []clientv3.OpOption{clientv3.WithFromKey()}
	if rev != 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := kv.Get(context.Background(), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

func diff(want, got map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "missing %s\n", k)
		} else if g != v {
			fmt.Fprintf(&b, "%s differs\n", k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "extra %s\n", k)
		}
	}
	return b.String()
}

func put(t *testing.T, kv clientv3.KV, n int, prefix string) {
	t.Helper()
	for i := 0; i < n; i++ {
		// Values of varying size, some binary, like protobuf objects.
		v := bytes.Repeat([]byte{byte(i), 0, '\n'}, 10+i%300)
		if _, err := kv.Put(context.Background(), fmt.Sprintf("/registry/%s/%05d", prefix, i), string(v)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupUnderWritesAndClone copies a tenant of 1,200 keys (more than
// two pages) while a writer keeps adding and deleting keys, then restores
// it into an empty tenant: the clone holds exactly the keys the source
// held at the manifest's revision, and nothing of the neighbour.
func TestBackupUnderWritesAndClone(t *testing.T) {
	e := testenv.StartEtcd(t)
	cli := e.Client(t, "root")
	src, neighbour, clone := tenantSource(t, cli, tenantID(1)), tenantSource(t, cli, tenantID(2)), tenantSource(t, cli, tenantID(3))
	put(t, src.KV, 1200, "objects")
	put(t, neighbour.KV, 50, "secrets")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := src.KV.Put(ctx, fmt.Sprintf("/registry/late/%05d", i), "x"); err == nil {
				writes.Add(1)
			}
			_, _ = src.KV.Delete(ctx, fmt.Sprintf("/registry/objects/%05d", i%1200))
		}
	}()
	// Let the writer run before and during the copy.
	waitFor(t, func() bool { return writes.Load() >= 20 })

	id, to := newKey(t)
	store := backup.Dir{Path: t.TempDir()}
	m, err := backup.Create(context.Background(), store, "b1", src.Snapshotter(to))
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := contents(t, src.KV, m.Revision)
	if m.Objects != len(want) || m.Objects < 600 {
		t.Fatalf("manifest counts %d objects, the tenant held %d at revision %d", m.Objects, len(want), m.Revision)
	}
	if now := contents(t, src.KV, 0); len(diff(want, now)) == 0 {
		t.Fatal("the writer changed nothing after the backup's revision: the test shows nothing about consistency")
	}

	res, err := backup.RestoreFrom(context.Background(), store, "b1", clone.Restorer(id, backup.IntoEmpty))
	if err != nil {
		t.Fatal(err)
	}
	got := contents(t, clone.KV, 0)
	if d := diff(want, got); d != "" {
		t.Fatalf("clone differs from the source at revision %d:\n%.2000s", m.Revision, d)
	}
	if res.Objects != m.Objects {
		t.Fatalf("restore wrote %d objects, manifest says %d", res.Objects, m.Objects)
	}
	for k := range got {
		if strings.Contains(k, "secrets") {
			t.Fatalf("clone holds the neighbour's key %s", k)
		}
	}
	// A second clone into the now non-empty tenant is refused and changes
	// nothing.
	if _, err := backup.RestoreFrom(context.Background(), store, "b1", clone.Restorer(id, backup.IntoEmpty)); err == nil || !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore into a non-empty tenant: got %v, want a refusal", err)
	}
	list, err := backup.List(context.Background(), store, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "b1" || list[0].Objects != m.Objects || list[0].Revision != m.Revision || list[0].ArchiveBytes == 0 {
		t.Fatalf("list = %+v", list)
	}
}

// TestRollBack replaces a tenant's keys with a backup: keys created after
// it are gone, keys deleted after it are back, keys attached to a lease
// are attached to a fresh lease of the same TTL, and every restored key
// has a revision above anything written before.
func TestRollBack(t *testing.T) {
	e := testenv.StartEtcd(t)
	cli := e.Client(t, "root")
	src := tenantSource(t, cli, tenantID(1))
	put(t, src.KV, 100, "objects")
	g, err := src.Lease.Grant(context.Background(), 120)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.KV.Put(context.Background(), "/registry/events/e1", "event", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	id, to := newKey(t)
	store := backup.Dir{Path: t.TempDir()}
	m, err := backup.Create(context.Background(), store, "before", src.Snapshotter(to))
	if err != nil {
		t.Fatal(err)
	}
	if m.LeaseTTLs[int64(g.ID)] != 120 {
		t.Fatalf("manifest leases = %v, want lease %x with TTL 120", m.LeaseTTLs, g.ID)
	}
	want := contents(t, src.KV, 0)
	if _, err := src.KV.Put(context.Background(), "/registry/objects/created-after", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.KV.Delete(context.Background(), "/registry/objects/00007"); err != nil {
		t.Fatal(err)
	}
	before, err := src.KV.Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}

	if _, err := backup.RestoreFrom(context.Background(), store, "before", src.Restorer(id, backup.Replace)); err != nil {
		t.Fatal(err)
	}
	resp, err := src.KV.Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
		if kv.ModRevision <= before.Header.Revision {
			t.Fatalf("%s restored at revision %d, not above %d", kv.Key, kv.ModRevision, before.Header.Revision)
		}
		if string(kv.Key) == "/registry/events/e1" {
			if kv.Lease == 0 || kv.Lease == int64(g.ID) {
				t.Fatalf("event restored with lease %x, want a fresh one", kv.Lease)
			}
			ttl, err := src.Lease.TimeToLive(context.Background(), clientv3.LeaseID(kv.Lease))
			if err != nil || ttl.GrantedTTL != 120 {
				t.Fatalf("restored lease: %+v, %v; want granted TTL 120", ttl, err)
			}
		}
	}
	if d := diff(want, got); d != "" {
		t.Fatalf("rolled-back tenant differs from the backup:\n%s", d)
	}
}

// TestDamagedArchives refuses an archive that was changed, cut short,
// read with another key, or whose manifest does not match it.
func TestDamagedArchives(t *testing.T) {
	e := testenv.StartEtcd(t)
	cli := e.Client(t, "root")
	src := tenantSource(t, cli, tenantID(1))
	put(t, src.KV, 300, "objects")
	id, to := newKey(t)
	dir := t.TempDir()
	store := backup.Dir{Path: dir}
	m, err := backup.Create(context.Background(), store, "b", src.Snapshotter(to))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "b.kvs.age"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newKey(t)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x40
	cases := []struct {
		name string
		data []byte
		id   age.Identity
		m    func(*backup.Manifest)
		want string
	}{
		{name: "byte changed", data: flipped, id: id},
		{name: "cut short", data: data[:len(data)-100], id: id},
		{name: "another key", data: data, id: other, want: "backup key"},
		{name: "manifest count", data: data, id: id, m: func(m *backup.Manifest) { m.Objects++ }, want: "objects"},
		{name: "manifest checksum", data: data, id: id, m: func(m *backup.Manifest) { m.SHA256 = strings.Repeat("0", 64) }, want: "SHA-256"},
		{name: "format", data: data, id: id, m: func(m *backup.Manifest) { m.Format = 99 }, want: "format 99"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mm := m
			if c.m != nil {
				c.m(&mm)
			}
			dst := tenantSource(t, cli, tenantID(10+i))
			_, err := backup.Restore(context.Background(), dst, bytes.NewReader(c.data), c.id, mm, backup.IntoEmpty)
			if err == nil {
				t.Fatal("restore accepted a damaged archive")
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
	// A clean archive restores (the cases above fail for their damage).
	dst := tenantSource(t, cli, tenantID(99))
	if _, err := backup.Restore(context.Background(), dst, bytes.NewReader(data), id, m, backup.IntoEmpty); err != nil {
		t.Fatal(err)
	}
}

// compactingKV compacts the datastore right after the first page is read,
// as if the datastore's compaction ran while a long copy was under way.
type compactingKV struct {
	clientv3.KV
	raw   clientv3.KV
	pages int
}

func (c *compactingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.pages++
	if c.pages == 2 {
		r, err := c.raw.Put(ctx, "/other", "x")
		if err != nil {
			return nil, err
		}
		if _, err := c.raw.Compact(ctx, r.Header.Revision); err != nil {
			return nil, err
		}
	}
	return c.KV.Get(ctx, key, opts...)
}

// TestCompactedDuringCopy fails the backup with a message that says what
// happened, rather than mixing keys of two revisions.
func TestCompactedDuringCopy(t *testing.T) {
	e := testenv.StartEtcd(t)
	cli := e.Client(t, "root")
	src := tenantSource(t, cli, tenantID(1))
	put(t, src.KV, 700, "objects")
	_, to := newKey(t)
	src.KV = &compactingKV{KV: src.KV, raw: cli.KV}
	store := backup.Dir{Path: t.TempDir()}
	_, err := backup.Create(context.Background(), store, "b", src.Snapshotter(to))
	if err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("backup across a compaction: got %v, want a compaction error", err)
	}
	if list, err := backup.List(context.Background(), store, ""); err != nil || len(list) != 0 {
		t.Fatalf("a failed backup is listed: %v %v", list, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
