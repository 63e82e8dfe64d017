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
	} {
		o := testOptions()
		o.Backup = c.b
		if _, err := Render(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", c.b, err, c.want)
		}
	}
}
