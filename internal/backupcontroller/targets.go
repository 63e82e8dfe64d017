package backupcontroller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
)

// S3Settings say where the S3 target is. The credentials are not here:
// they are read from CredentialsSecret at every use, so a rotated key
// needs no restart and never appears in flags or specs.
type S3Settings struct {
	// Endpoint, Bucket, Prefix and Region are those of backup.S3Config.
	Endpoint, Bucket, Prefix, Region string
	// CredentialsSecret is a Secret in the operator's namespace holding
	// S3AccessKeyID and S3SecretAccessKey, and optionally S3CA.
	CredentialsSecret string
}

// Keys of the S3 credentials Secret.
const (
	S3AccessKeyID     = "accessKeyID"
	S3SecretAccessKey = "secretAccessKey"
	// S3CA is a PEM bundle the server's certificate is checked against
	// instead of the system's roots.
	S3CA = "ca.crt"
)

// DefaultS3CredentialsSecret is the credentials Secret's name unless
// install is told another.
const DefaultS3CredentialsSecret = "kubinception-backup-s3"

// String is where the bucket is, as status shows it.
func (s S3Settings) String() string {
	return "s3://" + s.Bucket + "/" + strings.TrimSuffix(s.Prefix, "/")
}

// resolveTarget is the target a backup goes to: the one asked for, else
// the volume when the operator has one, else S3.
func (r *Reconciler) resolveTarget(asked kv1.BackupTarget) kv1.BackupTarget {
	switch {
	case asked != "":
		return asked
	case r.Target == nil && r.S3 != nil:
		return kv1.BackupTargetS3
	}
	return kv1.BackupTargetVolume
}

// storedTarget is the target a backup's archive was written to; backups
// made before there was a choice are on the volume.
func storedTarget(tb *kv1.TenantBackup) kv1.BackupTarget {
	if tb.Status.Target != "" {
		return tb.Status.Target
	}
	return kv1.BackupTargetVolume
}

// missingTarget says how to configure a target the operator lacks; empty
// when it has it.
func (r *Reconciler) missingTarget(kind kv1.BackupTarget) string {
	switch kind {
	case kv1.BackupTargetS3:
		if r.S3 == nil {
			return "the operator has no S3 backup target: install it with --backup-s3-endpoint and --backup-s3-bucket, the credentials in the Secret " + DefaultS3CredentialsSecret + " (chart values backup.s3.*)"
		}
	default:
		if r.Target == nil {
			if r.S3 != nil {
				return "the operator has no Volume backup target (it has S3: set spec.target to S3), or install it with --backup-host-path or --backup-volume-claim"
			}
			return "the operator has no backup target: install it with --backup-host-path or --backup-volume-claim (chart value backup.hostPath or backup.volumeClaim), or with an S3 bucket (--backup-s3-endpoint, --backup-s3-bucket)"
		}
	}
	return ""
}

// location is where a backup's archive is, for status.
func (r *Reconciler) location(kind kv1.BackupTarget, name string) string {
	if kind == kv1.BackupTargetS3 {
		return strings.TrimSuffix(r.S3.String(), "/") + "/" + name
	}
	return r.TargetName + "/" + name
}

// open returns a configured target, reading the S3 credentials afresh.
func (r *Reconciler) open(ctx context.Context, kind kv1.BackupTarget) (backup.Target, error) {
	if kind != kv1.BackupTargetS3 {
		return r.Target, nil
	}
	ref := types.NamespacedName{Namespace: r.Namespace, Name: r.S3.CredentialsSecret}
	if ref.Name == "" {
		ref.Name = DefaultS3CredentialsSecret
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, ref, s); err != nil {
		return nil, fmt.Errorf("S3 credentials Secret %s (keys %s and %s): %w", ref, S3AccessKeyID, S3SecretAccessKey, err)
	}
	t, err := backup.NewS3(backup.S3Config{
		Endpoint: r.S3.Endpoint, Bucket: r.S3.Bucket, Prefix: r.S3.Prefix, Region: r.S3.Region,
		AccessKeyID: string(s.Data[S3AccessKeyID]), SecretAccessKey: string(s.Data[S3SecretAccessKey]), CAPEM: s.Data[S3CA],
	})
	if err != nil {
		return nil, fmt.Errorf("S3 target (credentials from Secret %s): %w", ref, err)
	}
	return t, nil
}
