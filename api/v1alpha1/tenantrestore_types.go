package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantRestoreSpec says which backup to restore, and where.
type TenantRestoreSpec struct {
	// Backup is the Completed TenantBackup, in the TenantRestore's
	// namespace, to restore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.backup is immutable: create another TenantRestore"
	Backup string `json:"backup"`

	// Cluster is the TenantCluster, in the TenantRestore's namespace, to
	// restore into. Empty (or the backup's own cluster) rolls that
	// cluster back: it must be the one the backup copied (same UID).
	// Another name clones: that TenantCluster must exist with
	// spec.paused true and its control plane never started (`kubinception
	// backup restore BACKUP --into NAME` creates one with the source's
	// spec); the restore gives it the backup's keys and encryption keys,
	// then resumes it.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.cluster is immutable: create another TenantRestore"
	// +optional
	Cluster string `json:"cluster,omitempty"`
}

// TenantRestorePhase is where a roll back stands.
// +kubebuilder:validation:Enum=Pending;Stopping;Restoring;Starting;Completed;Failed
type TenantRestorePhase string

// Phases of a TenantRestore, in order. Completed and Failed are final.
const (
	// RestorePending: waiting for the backup to complete.
	RestorePending TenantRestorePhase = "Pending"
	// RestoreStopping: the TenantCluster is paused and its control plane
	// scaled to zero, so nothing writes while its keys are replaced.
	RestoreStopping TenantRestorePhase = "Stopping"
	// RestoreRestoring: the tenant's keys are being replaced by the
	// backup's.
	RestoreRestoring TenantRestorePhase = "Restoring"
	// RestoreStarting: the TenantCluster is resumed; the operator starts
	// its control plane on the restored state.
	RestoreStarting  TenantRestorePhase = "Starting"
	RestoreCompleted TenantRestorePhase = "Completed"
	RestoreFailed    TenantRestorePhase = "Failed"
)

// TenantRestoreStatus describes the roll back.
type TenantRestoreStatus struct {
	// +optional
	Phase TenantRestorePhase `json:"phase,omitempty"`
	// Message says what the restore waits for, or why it failed.
	// +optional
	Message string `json:"message,omitempty"`
	// Cluster is the TenantCluster rolled back or cloned into.
	// +optional
	Cluster string `json:"cluster,omitempty"`
	// Clone says the restore went into another TenantCluster than the
	// one the backup copied.
	// +optional
	Clone bool `json:"clone,omitempty"`
	// PausedByRestore records that the restore paused the TenantCluster,
	// so it resumes it; a cluster paused before stays paused.
	// +optional
	PausedByRestore bool `json:"pausedByRestore,omitempty"`
	// Objects counts the keys written back.
	// +optional
	Objects int64 `json:"objects,omitempty"`
	// Revision is the datastore revision after the restore: every
	// restored object has a higher resourceVersion than any the tenant's
	// clients saw before.
	// +optional
	Revision int64 `json:"revision,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// TenantRestore rolls a TenantCluster back to a TenantBackup, or clones
// the backup into a new TenantCluster. Roll back: the cluster is paused
// and its control plane stopped, every key of the tenant is replaced by
// the backup's, and the cluster is resumed; objects written after the
// backup are gone, objects deleted after it are back. Clone: the new,
// paused cluster receives the backup's keys and the encryption keys its
// Secrets were written with, then starts with its own PKI.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tr,categories=kubinception
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.spec.backup`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.status.cluster`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Objects",type=integer,JSONPath=`.status.objects`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TenantRestore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TenantRestoreSpec   `json:"spec"`
	Status TenantRestoreStatus `json:"status,omitempty"`
}

// TenantRestoreList is a list of TenantRestores.
//
// +kubebuilder:object:root=true
type TenantRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantRestore `json:"items"`
}
