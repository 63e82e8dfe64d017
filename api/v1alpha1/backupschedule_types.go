package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// BackupTarget is where a TenantBackup's archive is kept: one of the
// targets the operator was installed with.
// +kubebuilder:validation:Enum=Volume;S3
type BackupTarget string

// Backup targets.
const (
	// BackupTargetVolume is a volume of the admin cluster (install's
	// --backup-host-path or --backup-volume-claim).
	BackupTargetVolume BackupTarget = "Volume"
	// BackupTargetS3 is an S3-compatible bucket (install's
	// --backup-s3-endpoint and --backup-s3-bucket, credentials in a
	// Secret).
	BackupTargetS3 BackupTarget = "S3"
)

// BackupScheduleSpec makes the operator back a tenant up on a schedule
// and prune the scheduled backups it no longer needs. Backups made by
// hand are never pruned.
//
// +kubebuilder:validation:XValidation:rule="has(self.keep) || has(self.maxAge)",message="spec.backup: give keep, maxAge or both, so that scheduled backups are pruned"
type BackupScheduleSpec struct {
	// Schedule is when backups are made, a cron expression (five
	// fields, minute first, as in crontab; "CRON_TZ=Europe/Paris 0 3 * * *"
	// sets a time zone, UTC otherwise; @daily and the like are
	// accepted). Slots missed while the operator was down are made up
	// by one backup, not one per slot.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^((CRON_)?TZ=[^ ]+ +)?(@[a-z]+( [^ ]+)?|[^ @]+( +[^ ]+){4})$')",message="spec.backup.schedule must be a cron expression: five fields, minute hour day-of-month month day-of-week (such as \"0 3 * * *\"), or a descriptor such as @daily"
	Schedule string `json:"schedule"`
	// Keep is how many completed scheduled backups are kept; older ones
	// are deleted, with their archives.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Keep *int32 `json:"keep,omitempty"`
	// MaxAge deletes scheduled backups older than this (such as 168h).
	// The newest completed backup is kept whatever its age.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="spec.backup.maxAge must be at least 1m"
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
	// Target is where the scheduled backups are kept (the operator's
	// default target when empty: the volume if it has one, else S3).
	// +optional
	Target BackupTarget `json:"target,omitempty"`
}

// TenantBackupScheduleStatus reports the backup schedule.
type TenantBackupScheduleStatus struct {
	// Schedule is the expression the times below follow; a changed
	// schedule counts from when the operator saw it.
	// +optional
	Schedule string `json:"schedule,omitempty"`
	// Since is when the operator adopted Schedule: slots before it are
	// not made up.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// LastScheduleTime is the slot of the last scheduled backup created.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// LastScheduledBackup names that TenantBackup.
	// +optional
	LastScheduledBackup string `json:"lastScheduledBackup,omitempty"`
	// LastSuccessfulTime is when the newest completed scheduled backup
	// completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`
	// LastSuccessfulBackup names that TenantBackup.
	// +optional
	LastSuccessfulBackup string `json:"lastSuccessfulBackup,omitempty"`
	// NextScheduleTime is the next slot.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// Kept counts the scheduled backups that exist.
	// +optional
	Kept int32 `json:"kept,omitempty"`
	// Message says what the schedule waits for, or why it cannot run.
	// +optional
	Message string `json:"message,omitempty"`
}

// Labels and annotations of scheduled TenantBackups.
const (
	// LabelBackupSchedule is on every TenantBackup the schedule made,
	// set to the TenantCluster's name: retention considers only these.
	LabelBackupSchedule = "kubinception.dev/backup-schedule"
	// AnnotationScheduledTime is the slot (RFC 3339) the backup was made
	// for.
	AnnotationScheduledTime = "kubinception.dev/scheduled-time"
)
