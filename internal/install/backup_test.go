package install

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestBackupTarget mounts the backup target into the operator's pod and
// points the operator at it; two targets, or a relative path, are refused
// naming the flag.
func TestBackupTarget(t *testing.T) {
	podOf := func(o Options) (args []string, volumes, mounts []any) {
		t.Helper()
		objs, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range objs {
			if u.GetKind() != "Deployment" || u.GetName() != Name {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			args, _, _ = unstructured.NestedStringSlice(c, "args")
			mounts, _, _ = unstructured.NestedSlice(c, "volumeMounts")
			volumes, _, _ = unstructured.NestedSlice(u.Object, "spec", "template", "spec", "volumes")
			return args, volumes, mounts
		}
		t.Fatal("no operator Deployment")
		return nil, nil, nil
	}

	args, volumes, mounts := podOf(testOptions())
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--backup-dir") }) || len(volumes) != 0 || len(mounts) != 0 {
		t.Fatalf("without a target: args %v, volumes %v, mounts %v", args, volumes, mounts)
	}
	for _, b := range []BackupOptions{{HostPath: "/var/lib/kubinception/backups"}, {VolumeClaim: "backups"}} {
		o := testOptions()
		o.Backup = b
		args, volumes, mounts := podOf(o)
		if !slices.Contains(args, "--backup-dir="+BackupMountPath) || len(volumes) != 1 || len(mounts) != 1 {
			t.Fatalf("%+v: args %v, volumes %v, mounts %v", b, args, volumes, mounts)
		}
		v := volumes[0].(map[string]any)
		if b.HostPath != "" {
			if p, _, _ := unstructured.NestedString(v, "hostPath", "path"); p != b.HostPath {
				t.Fatalf("hostPath volume %v", v)
			}
		} else if c, _, _ := unstructured.NestedString(v, "persistentVolumeClaim", "claimName"); c != b.VolumeClaim {
			t.Fatalf("claim volume %v", v)
		}
		if p, _, _ := unstructured.NestedString(mounts[0].(map[string]any), "mountPath"); p != BackupMountPath {
			t.Fatalf("mount %v", mounts[0])
		}
	}
	for _, c := range []struct {
		b    BackupOptions
		want string
	}{
		{BackupOptions{HostPath: "/a", VolumeClaim: "b"}, "--backup-host-path and --backup-volume-claim"},
		{BackupOptions{HostPath: "backups"}, "--backup-host-path"},
		{BackupOptions{VolumeClaim: "ns/claim"}, "--backup-volume-claim"},
		{BackupOptions{S3: S3Options{Bucket: "b"}}, "need --backup-s3-endpoint"},
		{BackupOptions{S3: S3Options{Endpoint: "s3.example.com", Bucket: "b"}}, "--backup-s3-endpoint"},
		{BackupOptions{S3: S3Options{Endpoint: "https://KEY:SECRET@s3.example.com", Bucket: "b"}}, "without a path or credentials"},
		{BackupOptions{S3: S3Options{Endpoint: "https://s3.example.com"}}, "--backup-s3-bucket"},
		{BackupOptions{S3: S3Options{Endpoint: "https://s3.example.com", Bucket: "b", Prefix: "nos"}}, "--backup-s3-prefix"},
	} {
		o := testOptions()
		o.Backup = c.b
		if _, err := Render(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", c.b, err, c.want)
		}
	}
}

// TestBackupS3Flags: an S3 target becomes the operator's flags, the
// credentials only as the Secret's name, beside or without a volume.
func TestBackupS3Flags(t *testing.T) {
	o := testOptions()
	o.Backup = BackupOptions{HostPath: "/srv/backups", S3: S3Options{Endpoint: "https://s3.example.com", Bucket: "b", Prefix: "admin-1/"}}
	objs, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() != "Deployment" || u.GetName() != Name {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		for _, want := range []string{"--backup-dir=" + BackupMountPath, "--backup-s3-endpoint=https://s3.example.com", "--backup-s3-bucket=b",
			"--backup-s3-prefix=admin-1/", "--backup-s3-credentials-secret=kubinception-backup-s3"} {
			if !slices.Contains(args, want) {
				t.Errorf("args %v lack %s", args, want)
			}
		}
		return
	}
	t.Fatal("no operator Deployment")
}
