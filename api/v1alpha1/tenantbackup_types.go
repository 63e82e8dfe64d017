package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantBackupSpec says which tenant to copy.
type TenantBackupSpec struct {
	// Cluster is the TenantCluster, in the TenantBackup's namespace, whose
	// state is copied.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.cluster is immutable: create another TenantBackup for another cluster"
	Cluster string `json:"cluster"`
	// Target is where the archive is kept: Volume or S3, among the
	// targets the operator was installed with (its default when empty:
	// the volume if it has one, else S3).
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.target is immutable: create another TenantBackup for another target"
	// +optional
	Target BackupTarget `json:"target,omitempty"`
}

// TenantBackupPhase is where a backup stands.
// +kubebuilder:validation:Enum=Pending;Running;Completed;Failed
type TenantBackupPhase string

// Phases of a TenantBackup. Completed and Failed are final.
const (
	BackupPending   TenantBackupPhase = "Pending"
	BackupRunning   TenantBackupPhase = "Running"
	BackupCompleted TenantBackupPhase = "Completed"
	BackupFailed    TenantBackupPhase = "Failed"
)

// TenantBackupStatus describes the copy.
type TenantBackupStatus struct {
	// Phase is where the backup stands.
	// +optional
	Phase TenantBackupPhase `json:"phase,omitempty"`
	// Message says why a backup failed, or what it waits for.
	// +optional
	Message string `json:"message,omitempty"`
	// Attempts counts the copies tried.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// TenantUID is the UID of the TenantCluster copied: a TenantCluster
	// recreated under the same name is another tenant.
	// +optional
	TenantUID string `json:"tenantUID,omitempty"`
	// Datastore is the Datastore the tenant's state was read from.
	// +optional
	Datastore string `json:"datastore,omitempty"`
	// Target is the target the archive is kept in (spec.target, or the
	// operator's default).
	// +optional
	Target BackupTarget `json:"target,omitempty"`
	// Location is where the archive is kept: the backup target and the
	// archive's name in it.
	// +optional
	Location string `json:"location,omitempty"`
	// Revision is the datastore revision every object was read at.
	// +optional
	Revision int64 `json:"revision,omitempty"`
	// Objects counts the copied keys (Kubernetes objects, and the few
	// keys the API server keeps beside them).
	// +optional
	Objects int64 `json:"objects,omitempty"`
	// DataBytes is the size of the copied keys and values.
	// +optional
	DataBytes int64 `json:"dataBytes,omitempty"`
	// ArchiveBytes is the size of the stored archive (compressed and
	// encrypted).
	// +optional
	ArchiveBytes int64 `json:"archiveBytes,omitempty"`
	// SHA256 is the hex SHA-256 of the stored archive.
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// StartTime and CompletionTime bound the copy that completed.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// TenantBackup is a consistent copy of one TenantCluster's state (every
// key of the tenant in the shared datastore, at one revision), encrypted
// and stored in the platform's backup target. Deleting it deletes the
// archive.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tb,categories=kubinception
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.cluster`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Objects",type=integer,JSONPath=`.status.objects`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.archiveBytes`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.target`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TenantBackup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TenantBackupSpec   `json:"spec"`
	Status TenantBackupStatus `json:"status,omitempty"`
}

// TenantBackupList is a list of TenantBackups.
//
// +kubebuilder:object:root=true
type TenantBackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantBackup `json:"items"`
}
