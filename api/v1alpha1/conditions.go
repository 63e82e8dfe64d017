package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a TenantCluster. Ready summarises the others.
const (
	ConditionReady                 = "Ready"
	ConditionDatastoreReady        = "DatastoreReady"
	ConditionCertificatesReady     = "CertificatesReady"
	ConditionControlPlaneAvailable = "ControlPlaneAvailable"
	ConditionAddonsReady           = "AddonsReady"
	ConditionDeleting              = "Deleting"
	// ConditionQuotaAvailable says whether the tenant may still grow its
	// state: False at 90 % of its datastore quota and at the quota.
	ConditionQuotaAvailable = "QuotaAvailable"
	// ConditionGatewayAvailable says whether a Datastore's gateway serves.
	ConditionGatewayAvailable = "GatewayAvailable"
	// ConditionNetworkFenced says whether the tenant's NetworkPolicies in
	// the admin cluster are in place (not part of Ready: they bind only
	// where the admin cluster's network plugin enforces them).
	ConditionNetworkFenced = "NetworkFenced"
	// ConditionSecretsEncrypted says whether every Secret of the tenant is
	// stored encrypted in the datastore (not part of Ready: a key rotation
	// or a missing key says so here, while the control plane serves).
	ConditionSecretsEncrypted = "SecretsEncrypted"
	// ConditionUpgrading is True while the tenant moves to spec.version:
	// first the control plane rolls, then the addons follow (not part of
	// Ready: the tenant serves throughout).
	ConditionUpgrading = "Upgrading"
	// ConditionNodeVersionsSupported says whether every node's kubelet is
	// within the supported skew of the API server: not newer, at most
	// three minors older (not part of Ready: the nodes are the
	// customer's).
	ConditionNodeVersionsSupported = "NodeVersionsSupported"
)

// Reasons, each one a person can act on.
const (
	ReasonReady                 = "Ready"
	ReasonPaused                = "Paused"
	ReasonDatastoreNotFound     = "DatastoreNotFound"
	ReasonDatastoreUnreachable  = "DatastoreUnreachable"
	ReasonDatastoreCredentials  = "DatastoreCredentialsInvalid"
	ReasonTenancyProvisioned    = "TenancyProvisioned"
	ReasonCertificatesIssued    = "CertificatesIssued"
	ReasonWaitingForEndpoint    = "WaitingForEndpoint"
	ReasonControlPlaneStarting  = "ControlPlaneStarting"
	ReasonWaitingToStart        = "WaitingToStart" // the operator's --max-starting-control-planes are starting
	ReasonControlPlaneAvailable = "ControlPlaneAvailable"
	ReasonControlPlaneFailing   = "ControlPlaneFailing"
	ReasonImageMissing          = "ImageMissing"
	ReasonInvalidSpec           = "InvalidSpec"
	// ReasonExtraArgsNotAllowed: spec.controlPlane.extraArgs sets a flag
	// outside the allow-list; nothing is applied.
	ReasonExtraArgsNotAllowed = "ExtraArgsNotAllowed"
	// ReasonRegistryNotAllowed: spec.controlPlane.imageRegistry names a
	// registry the operator does not allow; nothing is applied.
	ReasonRegistryNotAllowed   = "RegistryNotAllowed"
	ReasonWaiting              = "Waiting"
	ReasonAddonsApplied        = "AddonsApplied"
	ReasonTenantAPIUnreachable = "TenantAPIUnreachable"
	ReasonDeletingControlPlane = "DeletingControlPlane"
	ReasonDeletingData         = "DeletingData"
	ReasonNotDeleting          = "NotDeleting"
	ReasonReconcileFailed      = "ReconcileFailed"
	ReasonWaitingForGateway    = "WaitingForGateway"
	ReasonGatewayFailed        = "GatewayFailed"
	ReasonGatewayStarting      = "GatewayStarting"
	ReasonGatewayAvailable     = "GatewayAvailable"
	// ReasonLoadBalancerAddress is the Event emitted when a tenant
	// Service of type LoadBalancer gets its address from the admin
	// cluster.
	ReasonLoadBalancerAddress  = "LoadBalancerAddress"
	ReasonWithinQuota          = "WithinQuota"
	ReasonQuotaNearlyExhausted = "QuotaNearlyExhausted"
	ReasonQuotaExhausted       = "QuotaExhausted"
	ReasonMembersUnhealthy     = "MembersUnhealthy"
	ReasonAllMembersHealthy    = "AllMembersHealthy"
	// ReasonNetworkPoliciesApplied and ReasonNetworkPoliciesFailed are
	// NetworkFenced's reasons.
	ReasonNetworkPoliciesApplied = "NetworkPoliciesApplied"
	ReasonNetworkPoliciesFailed  = "NetworkPoliciesFailed"
	// SecretsEncrypted's reasons: every Secret under the one key; a key
	// rotation running (Secrets stay encrypted throughout); the first key
	// going in while Secrets written before it are still plaintext; the
	// key Secret gone while the datastore holds values only it decrypts.
	ReasonEncryptionKeyCurrent  = "EncryptionKeyCurrent"
	ReasonRotatingEncryptionKey = "RotatingEncryptionKey"
	ReasonEncryptingSecrets     = "EncryptingSecrets"
	ReasonEncryptionKeyMissing  = "EncryptionKeyMissing"
	// ReasonEncryptionKeyRotation is the Event of each step of a key
	// rotation.
	ReasonEncryptionKeyRotation = "EncryptionKeyRotation"
	// ReasonCertificatesRotated is the Event of leaf certificates
	// reissued, by schedule or on request.
	ReasonCertificatesRotated = "CertificatesRotated"
	// ReasonCertificateAuthorityExpiring: CertificatesReady stays True,
	// but the tenant CA is two thirds into its life; the operator never
	// replaces it on its own (every joined node trusts it): start a CA
	// rotation. ReasonCertificateAuthorityExpired: it has expired and
	// nothing it issued verifies any more.
	ReasonCertificateAuthorityExpiring = "CertificateAuthorityExpiring"
	ReasonCertificateAuthorityExpired  = "CertificateAuthorityExpired"
	// ReasonCARotation is the Event of each phase of a CA rotation;
	// ReasonCARotationWaiting the Warning of a complete that waits for
	// nodes still on the old CA.
	ReasonCARotation        = "CARotation"
	ReasonCARotationWaiting = "CARotationWaitingForNodes"
	// Upgrading's reasons: the control plane rolls to the new version
	// (its API servers drain before they stop); the control plane runs
	// it and the addons follow; everything runs spec.version.
	ReasonRollingControlPlane = "RollingControlPlane"
	ReasonUpdatingAddons      = "UpdatingAddons"
	ReasonVersionCurrent      = "VersionCurrent"
	// NodeVersionsSupported's reasons.
	ReasonKubeletsWithinSkew     = "KubeletsWithinSkew"
	ReasonKubeletSkewUnsupported = "KubeletSkewUnsupported"
)

// AnnotationNudge, set to a new value on a TenantCluster, makes the operator
// reconcile it at once (node add uses it to get a new kubelet's serving
// certificate approved without waiting).
const AnnotationNudge = "kubinception.dev/reconcile-requested"

// AnnotationEncryptionKeyRotation, set to a new value on a TenantCluster,
// rotates the key its Secrets are encrypted with: a new key, every Secret
// rewritten with it, the old key dropped (kubinception rotate
// encryption-key sets it). status.encryption.observedRotation takes the
// value when the rotation finishes.
const AnnotationEncryptionKeyRotation = "kubinception.dev/encryption-key-rotation-requested"

// AnnotationCertificateRotation, set to a new value on a TenantCluster,
// reissues every leaf certificate the operator holds for it (kubinception
// rotate certs sets it); status.certificates.observedRotation takes the
// value once they are reissued.
const AnnotationCertificateRotation = "kubinception.dev/certificate-rotation-requested"

// Finalizer keeps a TenantCluster until its control plane, keys, etcd
// user and role are gone.
const Finalizer = "kubinception.dev/tenant-cleanup"

// SetCondition records a condition observed at now. The transition time
// moves only when the status changes, so it says since when a condition
// holds; callers pass the reconcile's clock, never the wall clock. It
// reports whether the condition is new or changed its status or reason:
// the changes worth a log line and an Event.
func SetCondition(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, message string, generation int64, now time.Time) (transitioned bool) {
	old := meta.FindStatusCondition(*conds, typ)
	transitioned = old == nil || old.Status != status || old.Reason != reason
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(now),
	})
	return transitioned
}
