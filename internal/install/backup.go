package install

import (
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// BackupMountPath is where the operator's pod mounts the backup target.
const BackupMountPath = "/var/lib/kubinception/backups"

// BackupOptions say where TenantBackups keep their archives: a directory
// of the node (a single-node admin cluster such as the local one) or a
// PersistentVolumeClaim. With neither, TenantBackups fail saying so.
type BackupOptions struct {
	// HostPath is a directory of the node the operator runs on, which
	// must exist and be writable by UID 65534.
	HostPath string
	// VolumeClaim is a PersistentVolumeClaim in kubinception-system.
	VolumeClaim string
}

func (b BackupOptions) validate() error {
	switch {
	case b.HostPath != "" && b.VolumeClaim != "":
		return fmt.Errorf("--backup-host-path and --backup-volume-claim are both set: give one backup target")
	case b.HostPath != "" && (!filepath.IsAbs(b.HostPath) || strings.ContainsAny(b.HostPath, ",\n")):
		return fmt.Errorf("--backup-host-path %q must be an absolute path, such as /var/lib/kubinception/backups", b.HostPath)
	case b.VolumeClaim != "" && strings.ContainsAny(b.VolumeClaim, "/ \n"):
		return fmt.Errorf("--backup-volume-claim %q must be the name of a PersistentVolumeClaim in %s", b.VolumeClaim, Namespace)
	}
	return nil
}

// backupVolume is the operator pod's backup volume and the flag that
// points the operator at it; nil when no target is set.
func (b BackupOptions) volume() (*corev1.Volume, []string) {
	v := &corev1.Volume{Name: "backups"}
	switch {
	case b.HostPath != "":
		dir := corev1.HostPathDirectory
		v.HostPath = &corev1.HostPathVolumeSource{Path: b.HostPath, Type: &dir}
	case b.VolumeClaim != "":
		v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: b.VolumeClaim}
	default:
		return nil, nil
	}
	return v, []string{"--backup-dir=" + BackupMountPath}
}
