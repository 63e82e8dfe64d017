package install

import (
	"fmt"
	"net/url"
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
	// S3 is an S3-compatible bucket, a target beside the volume or
	// instead of it.
	S3 S3Options
}

// S3Options say where the S3 target is. The credentials are in a Secret
// of kubinception-system (keys accessKeyID, secretAccessKey and
// optionally ca.crt), which the operator reads at every use; they never
// appear in flags or in any spec.
type S3Options struct {
	// Endpoint is the server's URL (https://host[:port]); empty: no S3
	// target.
	Endpoint string
	// Bucket holds the archives; it must exist.
	Bucket string
	// Prefix is put before every object name; it ends with "/".
	Prefix string
	// Region is the bucket's region (us-east-1 when empty).
	Region string
	// CredentialsSecret names the Secret (kubinception-backup-s3 when
	// empty).
	CredentialsSecret string
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
	return b.S3.validate()
}

func (s S3Options) validate() error {
	if s.Endpoint == "" {
		if s.Bucket != "" || s.Prefix != "" || s.Region != "" || s.CredentialsSecret != "" {
			return fmt.Errorf("--backup-s3-bucket, --backup-s3-prefix, --backup-s3-region and --backup-s3-credentials-secret need --backup-s3-endpoint")
		}
		return nil
	}
	u, err := url.Parse(s.Endpoint)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil:
		return fmt.Errorf("--backup-s3-endpoint %q must be a URL such as https://s3.example.com, without a path or credentials (those go in the Secret %s)", s.Endpoint, s.secret())
	case s.Bucket == "" || strings.ContainsAny(s.Bucket, "/ \n"):
		return fmt.Errorf("--backup-s3-bucket %q must name the bucket (which must exist)", s.Bucket)
	case s.Prefix != "" && (!strings.HasSuffix(s.Prefix, "/") || strings.HasPrefix(s.Prefix, "/") || strings.ContainsAny(s.Prefix, " \n")):
		return fmt.Errorf("--backup-s3-prefix %q must end with / and not start with one, such as admin-1/", s.Prefix)
	case strings.ContainsAny(s.Region+s.CredentialsSecret, "/ \n,"):
		return fmt.Errorf("--backup-s3-region %q or --backup-s3-credentials-secret %q is not valid", s.Region, s.CredentialsSecret)
	}
	return nil
}

func (s S3Options) secret() string {
	if s.CredentialsSecret == "" {
		return "kubinception-backup-s3"
	}
	return s.CredentialsSecret
}

// flags are the operator's flags for the S3 target.
func (s S3Options) flags() []string {
	if s.Endpoint == "" {
		return nil
	}
	out := []string{"--backup-s3-endpoint=" + s.Endpoint, "--backup-s3-bucket=" + s.Bucket}
	if s.Prefix != "" {
		out = append(out, "--backup-s3-prefix="+s.Prefix)
	}
	if s.Region != "" {
		out = append(out, "--backup-s3-region="+s.Region)
	}
	return append(out, "--backup-s3-credentials-secret="+s.secret())
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
