package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretReference names a Secret in a namespace.
type SecretReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
}

// DatastoreSpec describes one shared etcd cluster.
type DatastoreSpec struct {
	// Endpoints are the members' client URLs (https).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Pattern=`^https://[^\s/]+(:[0-9]+)?$`
	Endpoints []string `json:"endpoints"`

	// CASecretRef names a Secret holding the certificate ("ca.crt") of
	// the CA that signed the members' serving certificates. Its key is
	// not needed: tenants' certificates come from the gateway's own CA.
	CASecretRef SecretReference `json:"caSecretRef"`

	// RootSecretRef names a Secret holding the root user's client
	// certificate ("tls.crt", "tls.key"), used to manage tenants' users,
	// roles and keys.
	RootSecretRef SecretReference `json:"rootSecretRef"`

	// DefaultQuotaBytes caps each tenant's state unless the tenant says
	// otherwise.
	// +kubebuilder:default="2Gi"
	// +optional
	DefaultQuotaBytes *resource.Quantity `json:"defaultQuotaBytes,omitempty"`

	// Gateway configures the etcd gateway the operator runs in front of
	// this datastore: tenant API servers reach the datastore only through
	// it.
	// +kubebuilder:default={}
	// +optional
	Gateway GatewaySpec `json:"gateway,omitempty"`
}

// DefaultRateLimits are the rates every tenant of a Datastore gets unless
// it sets its own. Each has its own default, so a Datastore written with
// an empty defaultLimits gets them too.
type DefaultRateLimits struct {
	// RequestsPerSecond is the sustained rate of datastore requests.
	// +kubebuilder:default=500
	// +kubebuilder:validation:Minimum=1
	// +optional
	RequestsPerSecond *int32 `json:"requestsPerSecond,omitempty"`
	// BytesPerSecond is the sustained rate of bytes written and read.
	// +kubebuilder:default="32Mi"
	// +optional
	BytesPerSecond *resource.Quantity `json:"bytesPerSecond,omitempty"`
}

// GatewaySpec configures a Datastore's gateway.
type GatewaySpec struct {
	// Replicas of the gateway; two or more so one can restart while the
	// other serves.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// DefaultLimits are each tenant's request and byte rates unless the
	// tenant overrides them.
	// +kubebuilder:default={}
	// +optional
	DefaultLimits DefaultRateLimits `json:"defaultLimits,omitempty"`
	// Resources of each gateway container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// DatastoreStatus is what the operator observed of a datastore.
type DatastoreStatus struct {
	// Conditions: Ready says whether every member is healthy.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// HealthyMembers counts members answering without errors.
	// +optional
	HealthyMembers int32 `json:"healthyMembers,omitempty"`
	// Members counts all members.
	// +optional
	Members int32 `json:"members,omitempty"`
	// Tenants counts TenantClusters placed on this datastore.
	// +optional
	Tenants int32 `json:"tenants,omitempty"`
	// Gateway is the endpoint tenant API servers use, and how many
	// gateway replicas are ready.
	// +optional
	Gateway GatewayStatus `json:"gateway,omitempty"`
	// UsedBytes sums the tenants' usage as the gateway counts it.
	// +optional
	UsedBytes int64 `json:"usedBytes,omitempty"`
}

// GatewayStatus reports a Datastore's gateway.
type GatewayStatus struct {
	// Endpoint is the gateway's client URL.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// ReadyReplicas counts gateway pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
}

// Datastore is a shared etcd cluster holding many tenants' state, each
// under its own key prefix and readable only with its own credentials.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=kubinception
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Members",type=string,JSONPath=`.status.healthyMembers`
// +kubebuilder:printcolumn:name="Tenants",type=integer,JSONPath=`.status.tenants`
// +kubebuilder:printcolumn:name="Gateway",type=integer,JSONPath=`.status.gateway.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Datastore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DatastoreSpec   `json:"spec"`
	Status DatastoreStatus `json:"status,omitempty"`
}

// DatastoreList is a list of Datastores.
//
// +kubebuilder:object:root=true
type DatastoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Datastore `json:"items"`
}
