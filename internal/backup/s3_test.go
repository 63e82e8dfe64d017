package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/testenv"
)

// s3Target starts a real S3-compatible server (versitygw, built from its
// Go module by hack/deps) on the loopback and returns the bucket's target
// under a prefix.
func s3Target(t *testing.T) (*backup.S3, *testenv.S3Server) {
	t.Helper()
	srv := testenv.StartS3Server(t, "127.0.0.1", "backups")
	target, err := backup.NewS3(backup.S3Config{Endpoint: srv.Endpoint, Bucket: "backups", Prefix: "admin-1/",
		AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	return target, srv
}

// TestS3Target backs a tenant up into a real S3 server and restores it:
// the archive and manifest are two objects under the prefix, listed with
// the manifest's counts, restored into another tenant exactly; a damaged
// object fails the restore on its checksum; removal leaves no object.
func TestS3Target(t *testing.T) {
	target, srv := s3Target(t)
	ctx := context.Background()
	if err := target.Check(ctx); err != nil {
		t.Fatal(err)
	}
	e := testenv.StartEtcd(t)
	cli := e.Client(t, "root")
	src, clone := tenantSource(t, cli, tenantID(1)), tenantSource(t, cli, tenantID(2))
	put(t, src.KV, 300, "objects")
	id, to := newKey(t)

	m, err := backup.Create(ctx, target, "b1", src.Snapshotter(to))
	if err != nil {
		t.Fatal(err)
	}
	if m.Objects != 300 || m.ArchiveBytes == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	// The objects, as the server keeps them: under the prefix, the
	// archive encrypted (no key or value in clear).
	s3c := srv.Client(t)
	var keys []string
	for o := range s3c.ListObjects(ctx, "backups", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
		if o.Key == "admin-1/b1.kvs.age" && o.Size != m.ArchiveBytes {
			t.Errorf("archive object is %d bytes, the manifest says %d", o.Size, m.ArchiveBytes)
		}
	}
	if strings.Join(keys, ",") != "admin-1/b1.json,admin-1/b1.kvs.age" {
		t.Fatalf("objects in the bucket: %q", keys)
	}
	raw := readObject(t, target, "b1.kvs.age")
	if bytes.Contains(raw, []byte("/registry/objects")) {
		t.Fatal("the archive object holds keys in clear")
	}

	list, err := backup.List(ctx, target, "")
	if err != nil || len(list) != 1 || list[0].Name != "b1" || list[0].Objects != 300 || list[0].Revision != m.Revision || list[0].SHA256 != m.SHA256 {
		t.Fatalf("list: %+v %v", list, err)
	}
	res, err := backup.RestoreFrom(ctx, target, "b1", clone.Restorer(id, backup.IntoEmpty))
	if err != nil || res.Objects != 300 {
		t.Fatalf("restore: %+v %v", res, err)
	}
	if d := diff(contents(t, src.KV, m.Revision), contents(t, clone.KV, 0)); d != "" {
		t.Fatalf("the clone differs from the backup:\n%s", d)
	}

	// One flipped byte in the stored archive: the restore refuses it.
	raw[len(raw)/2] ^= 0xff
	if err := target.Put(ctx, "b1.kvs.age", bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	third := tenantSource(t, cli, tenantID(3))
	if _, err := backup.RestoreFrom(ctx, target, "b1", third.Restorer(id, backup.IntoEmpty)); err == nil {
		t.Fatal("a damaged archive restored")
	}

	if err := backup.Remove(ctx, target, "b1"); err != nil {
		t.Fatal(err)
	}
	if names, err := target.List(ctx, ""); err != nil || len(names) != 0 {
		t.Fatalf("left after removal: %q %v", names, err)
	}
	if _, err := target.Get(ctx, "b1.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a removed object: %v, want os.ErrNotExist", err)
	}
	// Removing again is not an error: a finalizer may run twice.
	if err := backup.Remove(ctx, target, "b1"); err != nil {
		t.Fatal(err)
	}
}

// TestS3TargetRefusals: wrong credentials and a missing bucket fail with
// messages saying so; a bad endpoint is refused before any request.
func TestS3TargetRefusals(t *testing.T) {
	_, srv := s3Target(t)
	ctx := context.Background()
	wrong, err := backup.NewS3(backup.S3Config{Endpoint: srv.Endpoint, Bucket: "backups", AccessKeyID: srv.AccessKeyID, SecretAccessKey: "not-the-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Put(ctx, "x.json", strings.NewReader("{}")); err == nil || !strings.Contains(err.Error(), "credentials were refused") {
		t.Fatalf("wrong secret: %v", err)
	}
	missing, err := backup.NewS3(backup.S3Config{Endpoint: srv.Endpoint, Bucket: "nope", AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v", err)
	}
	for _, c := range []backup.S3Config{
		{Endpoint: "s3.example.com", Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s"},
		{Endpoint: "https://s3.example.com/path", Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s"},
		{Endpoint: "https://s3.example.com", Bucket: "b", Prefix: "noslash", AccessKeyID: "a", SecretAccessKey: "s"},
		{Endpoint: "https://s3.example.com", Bucket: "b"},
	} {
		if _, err := backup.NewS3(c); err == nil {
			t.Errorf("NewS3(%+v) accepted", c)
		}
	}
}

func readObject(t *testing.T, target backup.Target, name string) []byte {
	t.Helper()
	r, err := target.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
