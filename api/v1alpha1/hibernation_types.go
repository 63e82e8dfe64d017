package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ExposureFrontDoor reaches the API server through the front door: one
// TLS endpoint shared by every tenant, which routes by the server name a
// client asks for (<tenant>.<front-door domain>) without terminating TLS.
const ExposureFrontDoor ExposureType = "FrontDoor"

// HibernationSpec lets a tenant's control plane sleep: scaled to zero,
// its state kept in the datastore, woken by the first request that
// reaches it through the front door, by `kubinception wake` or on
// WakeSchedule.
type HibernationSpec struct {
	// Enabled lets the tenant hibernate: when idle, on schedule, or when
	// asked (`kubinception hibernate`). Switching it off wakes a
	// hibernated tenant.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// IdleAfterMinutes hibernates the tenant once no request has reached
	// it through the front door for this many minutes (0: never for
	// idleness). Only the front door sees requests: with another exposure
	// type, set a schedule instead.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10080
	// +optional
	IdleAfterMinutes int32 `json:"idleAfterMinutes,omitempty"`
	// Schedule hibernates the tenant at the times of a cron expression
	// (five fields, minute first, as in crontab; "CRON_TZ=Europe/Paris
	// 0 19 * * 1-5" sets a time zone, UTC otherwise; @daily and the like
	// are accepted).
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Schedule string `json:"schedule,omitempty"`
	// WakeSchedule wakes the tenant at the times of a cron expression,
	// in the same syntax.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	WakeSchedule string `json:"wakeSchedule,omitempty"`
}

// TenantHibernationStatus says whether the control plane sleeps, since
// when and why.
type TenantHibernationStatus struct {
	// Hibernated says the control plane is scaled to zero.
	// +optional
	Hibernated bool `json:"hibernated,omitempty"`
	// Since is when the control plane last hibernated or, awake, when it
	// last woke (or hibernation was enabled): the start of the state it
	// is in.
	// +optional
	Since *metav1.MicroTime `json:"since,omitempty"`
	// Reason is why it entered that state: Idle, Schedule, Requested
	// (kubinception hibernate or wake), Request (a request through the
	// front door woke it), WakeSchedule, Disabled or Enabled.
	// +optional
	Reason string `json:"reason,omitempty"`
	// LastActivity is the last time the front door reported a request to
	// the tenant.
	// +optional
	LastActivity *metav1.MicroTime `json:"lastActivity,omitempty"`
}

// Annotations asking a tenant to hibernate or wake, set by `kubinception
// hibernate` and `kubinception wake` to the time of the request
// (RFC 3339): a request older than the state the tenant is in is
// answered already.
const (
	AnnotationHibernateRequested = "kubinception.dev/hibernate-requested"
	AnnotationWakeRequested      = "kubinception.dev/wake-requested"
)

// ConditionHibernated is True while the control plane sleeps.
const ConditionHibernated = "Hibernated"

// Reasons of the Hibernated condition (and of Ready while hibernated).
const (
	ReasonHibernated = "Hibernated"
	ReasonAwake      = "Awake"
	// ReasonHostnameTaken: another tenant of the same name (in another
	// namespace) holds the front-door name.
	ReasonHostnameTaken = "HostnameTaken"
	// ReasonFrontDoorNotConfigured: exposure.type FrontDoor on an
	// operator without a front-door domain.
	ReasonFrontDoorNotConfigured = "FrontDoorNotConfigured"
	// ReasonInvalidSchedule: spec.hibernation.schedule or wakeSchedule
	// does not parse.
	ReasonInvalidSchedule = "InvalidSchedule"
)
