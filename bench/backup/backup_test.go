package backup_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/testenv"
)

const report = "../results/backup.md"

// sizes are the tenants measured, in objects.
var sizes = []int{1000, 10000, 50000}

// objectBytes is about a Kubernetes object's stored size (a ConfigMap or a
// Pod in protobuf).
const objectBytes = 1200

type row struct {
	objects                            int
	dataBytes, archiveBytes            int64
	backup, readFloor, restore, writeF time.Duration
	// s3Backup and s3Restore are the same backup and restore with the
	// archive in an S3-compatible server (versitygw) on the loopback.
	s3Backup, s3Restore time.Duration
}

// TestBackupBenchmark measures one tenant's backup and restore through
// the gateway's admin API. It asserts no timing.
func TestBackupBenchmark(t *testing.T) {
	if os.Getenv("KUBINCEPTION_BENCH") != "1" {
		t.Skip("KUBINCEPTION_BENCH is not 1: this benchmark runs real etcd and a gateway for a few minutes and rewrites bench/results/backup.md; run it with KUBINCEPTION_BENCH=1 go test -v -timeout 30m ./bench/backup")
	}
	load0 := benchkit.LoadAverage()
	d := testenv.StartGatewayDatastore(t, "--quota-backend-bytes=8589934592")
	g := d.StartGateway(t, func(c *gateway.Config) {
		c.Policy = gateway.StaticPolicy{}
		c.CompactionInterval = 0
		c.AdminAddress = "127.0.0.1:0"
	})
	tc, err := backupcontroller.AdminTLS(d.TenantCA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin := gateway.NewAdminClient(g.AdminAddr(), tc)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv := testenv.StartS3Server(t, "127.0.0.1", "bench")
	s3, err := backup.NewS3(backup.S3Config{Endpoint: srv.Endpoint, Bucket: "bench", AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	for i, n := range sizes {
		src := tenant(t, 3*i)
		dst := tenant(t, 3*i+1)
		floor := tenant(t, 3*i+2)
		kv := namespace.NewKV(d.Root.KV, src.Prefix)
		data, err := fill(ctx, kv, n)
		if err != nil {
			t.Fatal(err)
		}
		store := backup.Dir{Path: t.TempDir()}
		r := row{objects: n, dataBytes: data}

		// Read floor: the same keys, page by page at one revision, as
		// the backup reads them, without encrypting or storing.
		start := time.Now()
		if err := readAll(ctx, kv); err != nil {
			t.Fatal(err)
		}
		r.readFloor = time.Since(start)

		start = time.Now()
		m, err := backup.Create(ctx, store, "b", admin.Snapshotter(src.ID, id.Recipient()))
		if err != nil {
			t.Fatal(err)
		}
		r.backup, r.archiveBytes = time.Since(start), m.ArchiveBytes

		// Write floor: the same keys written in transactions of the
		// restore's size, straight to etcd.
		start = time.Now()
		if err := copyKeys(ctx, kv, namespace.NewKV(d.Root.KV, floor.Prefix)); err != nil {
			t.Fatal(err)
		}
		r.writeF = time.Since(start)

		start = time.Now()
		res, err := backup.RestoreFrom(ctx, store, "b", admin.Restorer(dst.ID, id, backup.IntoEmpty))
		if err != nil {
			t.Fatal(err)
		}
		r.restore = time.Since(start)
		if res.Objects != n {
			t.Fatalf("restored %d objects of %d", res.Objects, n)
		}
		if _, err := d.Root.Delete(ctx, dst.Prefix, clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}

		start = time.Now()
		if _, err := backup.Create(ctx, s3, fmt.Sprintf("b%d", n), admin.Snapshotter(src.ID, id.Recipient())); err != nil {
			t.Fatal(err)
		}
		r.s3Backup = time.Since(start)
		start = time.Now()
		if res, err := backup.RestoreFrom(ctx, s3, fmt.Sprintf("b%d", n), admin.Restorer(dst.ID, id, backup.IntoEmpty)); err != nil || res.Objects != n {
			t.Fatalf("restore from S3: %d objects of %d (%v)", res.Objects, n, err)
		}
		r.s3Restore = time.Since(start)
		t.Logf("%d objects: backup %s (read floor %s), restore %s (write floor %s), archive %d bytes of %d; with S3: backup %s, restore %s", n, r.backup, r.readFloor, r.restore, r.writeF, r.archiveBytes, r.dataBytes, r.s3Backup, r.s3Restore)
		rows = append(rows, r)
		for _, tn := range []datastore.Tenancy{src, dst, floor} {
			if _, err := d.Root.Delete(ctx, tn.Prefix, clientv3.WithPrefix()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := benchkit.WriteReport(report, markdown(rows, load0, benchkit.LoadAverage())); err != nil {
		t.Fatal(err)
	}
}

func tenant(t *testing.T, n int) datastore.Tenancy {
	t.Helper()
	tn, err := datastore.TenancyFor(fmt.Sprintf("backup00-0000-0000-0000-%012d", n))
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// fill writes n objects of about objectBytes: half field names and
// values that repeat across objects, half random, as protobuf objects
// with UIDs, timestamps and data are.
func fill(ctx context.Context, kv clientv3.KV, n int) (int64, error) {
	var total int64
	var ops []clientv3.Op
	common := strings.Repeat("metadata.labels.app.kubernetes.io/name=web;", objectBytes/2/44)
	for i := range n {
		random := make([]byte, objectBytes/2)
		_, _ = rand.Read(random)
		key := fmt.Sprintf("/registry/configmaps/ns-%03d/cm-%06d", i%100, i)
		val := common + string(random)
		total += int64(len(key) + len(val))
		ops = append(ops, clientv3.OpPut(key, val))
		if len(ops) == 100 || i == n-1 {
			if _, err := kv.Txn(ctx).Then(ops...).Commit(); err != nil {
				return 0, err
			}
			ops = ops[:0]
		}
	}
	return total, nil
}

func readAll(ctx context.Context, kv clientv3.KV) error {
	resp, err := kv.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithLimit(500))
	if err != nil {
		return err
	}
	rev := resp.Header.Revision
	for resp.More {
		last := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		if resp, err = kv.Get(ctx, last, clientv3.WithFromKey(), clientv3.WithLimit(500), clientv3.WithRev(rev), clientv3.WithSerializable()); err != nil {
			return err
		}
	}
	return nil
}

func copyKeys(ctx context.Context, from, to clientv3.KV) error {
	resp, err := from.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	size := 0
	for i, kv := range resp.Kvs {
		ops = append(ops, clientv3.OpPut(string(kv.Key), string(kv.Value)))
		size += len(kv.Key) + len(kv.Value)
		if len(ops) == 128 || size > 1<<20 || i == len(resp.Kvs)-1 {
			if _, err := to.Txn(ctx).Then(ops...).Commit(); err != nil {
				return err
			}
			ops, size = ops[:0], 0
		}
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func markdown(rows []row, load0, load1 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Per-tenant backup and restore\n\n")
	fmt.Fprintf(&b, "Measured %s on %s (load average before %s, after %s) by\n`KUBINCEPTION_BENCH=1 go test -v ./bench/backup`: one real etcd (authentication\non) and a gateway in the benchmark's process. Objects are about %d bytes, half\nrepeated text, half random. Backup: through the gateway's admin API into a\ndirectory, encrypted; its floor reads the same keys page by page at one\nrevision straight from etcd. Restore: from that directory through the admin\nAPI into an empty tenant; its floor writes the same keys straight to etcd in\ntransactions of the same size. Each pair was measured back to back.\n\n",
		benchkit.Now(), benchkit.Machine(), load0, load1, objectBytes)
	fmt.Fprintf(&b, "| objects | data | archive | backup | read floor | ratio | restore | write floor | ratio |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %.2f | %s | %s | %.2f |\n", r.objects, mib(r.dataBytes), mib(r.archiveBytes),
			benchkit.Millis(r.backup), benchkit.Millis(r.readFloor), benchkit.Ratio(r.backup, r.readFloor),
			benchkit.Millis(r.restore), benchkit.Millis(r.writeF), benchkit.Ratio(r.restore, r.writeF))
	}
	fmt.Fprintf(&b, "\nThe same backup and restore with the archive in an S3-compatible server\n(versitygw %s on a local directory, reached over HTTP on the loopback,\nuploaded in 16 MiB parts with a CRC32C each), against the directory above:\n\n", testenv.VersityGWVersion)
	fmt.Fprintf(&b, "| objects | backup to S3 | ratio to directory | restore from S3 | ratio to directory |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.2f | %s | %.2f |\n", r.objects, benchkit.Millis(r.s3Backup), benchkit.Ratio(r.s3Backup, r.backup),
			benchkit.Millis(r.s3Restore), benchkit.Ratio(r.s3Restore, r.restore))
	}
	b.WriteString("\nMigration between datastores: [migration.md](migration.md).\n")
	return b.String()
}
