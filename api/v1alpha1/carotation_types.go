package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationCARotation drives a tenant's CA rotation: "start" brings a new
// cluster CA, front-proxy CA and service-account signing key beside the
// old ones (both trusted, every certificate the control plane holds
// reissued from the new ones); "complete" drops the old ones once every
// node has moved to the new CA; "force-complete" drops them even when
// nodes have not. kubinception rotate ca sets it; a console or a GitOps
// tool may set it too. The value is the side of the rotation the tenant
// should be on, so setting it again changes nothing: a second rotation
// is a "start" after a "complete".
const AnnotationCARotation = "kubinception.dev/ca-rotation"

// Values of AnnotationCARotation.
const (
	CARotationStart         = "start"
	CARotationComplete      = "complete"
	CARotationForceComplete = "force-complete"
)

// CARotationPhase is where a tenant's CA rotation stands.
// +kubebuilder:validation:Enum=Preparing;Prepared;Completing;Completed
type CARotationPhase string

// Phases of a CA rotation. The PKI Secret is the record: it holds the old
// CAs exactly from Preparing to Completing, so a phase is never lost to a
// crash of the operator.
const (
	// CARotationPreparing: the new CAs and key are in the PKI Secret; the
	// control plane rolls to trust both and to hold certificates of the
	// new ones.
	CARotationPreparing CARotationPhase = "Preparing"
	// CARotationPrepared: every API server trusts both CAs, the tenant's
	// kube-public/cluster-info and kube-root-ca.crt carry both, new
	// kubelet certificates come from the new CA. Nodes and kubeconfigs
	// move over now.
	CARotationPrepared CARotationPhase = "Prepared"
	// CARotationCompleting: the old CAs and key are out of the PKI
	// Secret; the control plane rolls to trust the new ones alone.
	CARotationCompleting CARotationPhase = "Completing"
	// CARotationCompleted: the old CAs are trusted nowhere.
	CARotationCompleted CARotationPhase = "Completed"
)

// CARotationStatus reports a tenant's last (or running) CA rotation.
type CARotationStatus struct {
	// Phase is where the rotation stands.
	// +optional
	Phase CARotationPhase `json:"phase,omitempty"`
	// LastTransitionTime is when Phase last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// PreparingTime, PreparedTime, CompletingTime and CompletedTime are
	// when the rotation entered each phase: Prepared − Preparing is how
	// long the control plane took to trust both CAs, Completing −
	// Prepared how long nodes and kubeconfigs took to move.
	// +optional
	PreparingTime *metav1.Time `json:"preparingTime,omitempty"`
	// +optional
	PreparedTime *metav1.Time `json:"preparedTime,omitempty"`
	// +optional
	CompletingTime *metav1.Time `json:"completingTime,omitempty"`
	// +optional
	CompletedTime *metav1.Time `json:"completedTime,omitempty"`
	// MovedNodes are the nodes seen with a client certificate of the new
	// CA (an issued kubelet client CertificateSigningRequest).
	// +optional
	MovedNodes []string `json:"movedNodes,omitempty"`
	// PendingNodes are the nodes not yet seen with one: complete waits
	// for them (kubinception node rotate-ca, or the steps in
	// docs/operations.md for other machines).
	// +optional
	PendingNodes []string `json:"pendingNodes,omitempty"`
	// Message says what the rotation waits for.
	// +optional
	Message string `json:"message,omitempty"`
}
