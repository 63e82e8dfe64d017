package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MigrationPhase is where a move between Datastores stands. The phase is
// recorded before its step starts, so an operator that restarts knows
// what may have happened: before Switching completes the tenant is served
// by the source and an interrupted migration rolls back; from CleaningUp
// on it is served by the destination and the migration goes on.
// +kubebuilder:validation:Enum=Pending;Copying;Pausing;Switching;CleaningUp;Completed;RollingBack;RolledBack
type MigrationPhase string

// TenantMigrationStatus reports a tenant's move between Datastores.
type TenantMigrationStatus struct {
	// Source and Destination are the Datastores moved from and to.
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Phase is where the move stands.
	Phase MigrationPhase `json:"phase"`
	// StartTime is when the move (its last attempt) started;
	// CompletionTime when it completed or rolled back.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Attempts counts the moves started towards Destination.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// Keys is how many keys were copied at CopyRevision (a source
	// revision).
	// +optional
	Keys int64 `json:"keys,omitempty"`
	// +optional
	CopyRevision int64 `json:"copyRevision,omitempty"`
	// SwitchRevision is the destination's revision the tenant started at:
	// above every revision its clients saw on the source.
	// +optional
	SwitchRevision int64 `json:"switchRevision,omitempty"`
	// Pause is how long the tenant's writes were held.
	// +optional
	Pause *metav1.Duration `json:"pause,omitempty"`
	// ReleaseTime is when the source's gateways stopped forwarding the
	// tenant to the destination: once a completed move's control plane
	// had rolled onto the destination's gateway and none of its API
	// servers used the source's any more. Until then the source keeps
	// a move record for the tenant (and a new move waits for it).
	// +optional
	ReleaseTime *metav1.Time `json:"releaseTime,omitempty"`
	// Message says what happened last, such as why the move rolled back.
	// +optional
	Message string `json:"message,omitempty"`
}
