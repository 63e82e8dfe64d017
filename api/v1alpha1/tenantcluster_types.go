package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExposureType says how a tenant's API server is reached.
// +kubebuilder:validation:Enum=NodePort;LoadBalancer;ClusterIP;FrontDoor
type ExposureType string

// Exposure types.
const (
	ExposureNodePort     ExposureType = "NodePort"
	ExposureLoadBalancer ExposureType = "LoadBalancer"
	ExposureClusterIP    ExposureType = "ClusterIP"
)

// TenantClusterSpec is the customer cluster a platform team asks for.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.network) || has(self.network)",message="network cannot be removed once set"
// spec.version may move to another patch release of the minor it runs, up
// or down, or to the next minor; never to an older minor, never past the
// next one.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.version) || !has(self.version) || !oldSelf.version.matches('^v[0-9]+[.][0-9]+[.][0-9]+$') || !self.version.matches('^v[0-9]+[.][0-9]+[.][0-9]+$') || int(self.version.substring(1).split('.')[0]) > int(oldSelf.version.substring(1).split('.')[0]) || (int(self.version.substring(1).split('.')[0]) == int(oldSelf.version.substring(1).split('.')[0]) && int(self.version.split('.')[1]) >= int(oldSelf.version.split('.')[1]))",message="spec.version: downgrades are not supported: a control plane may go back only to another patch release of the minor it runs",messageExpression="'spec.version: downgrades are not supported (' + oldSelf.version + ' → ' + self.version + '): a newer minor may have stored objects an older one cannot read; only another patch release of ' + oldSelf.version.split('.')[0] + '.' + oldSelf.version.split('.')[1] + ' is allowed'",fieldPath=".version",reason="FieldValueInvalid"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.version) || !has(self.version) || !oldSelf.version.matches('^v[0-9]+[.][0-9]+[.][0-9]+$') || !self.version.matches('^v[0-9]+[.][0-9]+[.][0-9]+$') || int(self.version.substring(1).split('.')[0]) < int(oldSelf.version.substring(1).split('.')[0]) || (int(self.version.substring(1).split('.')[0]) == int(oldSelf.version.substring(1).split('.')[0]) && int(self.version.split('.')[1]) <= int(oldSelf.version.split('.')[1]) + 1)",message="spec.version: minor versions cannot be skipped: upgrade one minor at a time",messageExpression="'spec.version: minor versions cannot be skipped (' + oldSelf.version + ' → ' + self.version + '): upgrade one minor at a time, to the next minor of ' + oldSelf.version.split('.')[0] + '.' + oldSelf.version.split('.')[1] + ' first'",fieldPath=".version",reason="FieldValueInvalid"
type TenantClusterSpec struct {
	// Version is the Kubernetes release of the control plane. Which
	// releases are supported, and the default, is internal/release's
	// policy: hack/generate writes the rule and the default into the CRD.
	// How it may change is ruled on the spec (above), where oldSelf sees
	// it: Kubernetes CEL has no semantic-version type for "v1.35.4", so
	// those rules split the string, once both sides have the form
	// vMAJOR.MINOR.PATCH. A patch release may go down within its minor
	// because a minor's storage format does not change between its
	// patches, and going back is how a bad patch release is undone.
	// +kubebuilder:validation:MaxLength=20
	// +optional
	Version string `json:"version,omitempty"`

	// ControlPlane shapes the control-plane pods.
	// +kubebuilder:default={}
	// +optional
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitempty"`

	// Exposure says how the API server is reached.
	// +kubebuilder:default={}
	// +optional
	Exposure ExposureSpec `json:"exposure,omitempty"`

	// Datastore places the tenant's state.
	// +kubebuilder:default={}
	// +optional
	Datastore DatastorePlacement `json:"datastore,omitempty"`

	// Network holds the tenant cluster's address ranges. Immutable.
	// +kubebuilder:default={}
	// +optional
	Network NetworkSpec `json:"network,omitempty"`

	// Addons switches the addons the operator keeps inside the tenant.
	// +kubebuilder:default={}
	// +optional
	Addons AddonsSpec `json:"addons,omitempty"`

	// Paused stops the operator from changing anything of this tenant.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Hibernation lets the control plane sleep when idle or on a
	// schedule, and wake on the first request through the front door.
	// +kubebuilder:default={}
	// +optional
	Hibernation HibernationSpec `json:"hibernation,omitempty"`

	// Certificates sets how long the certificates the operator issues
	// for the tenant live.
	// +kubebuilder:default={}
	// +optional
	Certificates CertificatesSpec `json:"certificates,omitempty"`

	// Backup makes the operator back the tenant up on a schedule, with
	// retention.
	// +optional
	Backup *BackupScheduleSpec `json:"backup,omitempty"`
}

// CertificatesSpec sets the lifetimes of the certificates the operator
// issues for a tenant. Every certificate is renewed once two thirds of
// its life have passed; a changed lifetime reissues the certificates at
// once. Leaf certificates never outlive the CA that issued them.
type CertificatesSpec struct {
	// Validity is how long leaf certificates (the API server's, the
	// control plane's clients', the tunnel's, the datastore client's and
	// the customer kubeconfig's) are valid. Default 8760h (a year);
	// at least 2m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('2m')",message="spec.certificates.validity must be at least 2m (a certificate is renewed two thirds into its life; holders need the rest to pick up the new one)"
	// +optional
	Validity *metav1.Duration `json:"validity,omitempty"`
	// CAValidity is how long a new CA (the tenant CA and the front-proxy
	// CA) is valid. A CA is never replaced on its own (every joined node
	// trusts it): two thirds into its life CertificatesReady says
	// CertificateAuthorityExpiring, with a Warning Event. Default 87600h
	// (ten years); at least 1h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="spec.certificates.caValidity must be at least 1h"
	// +optional
	CAValidity *metav1.Duration `json:"caValidity,omitempty"`
}

// AddonsSpec switches the addons the operator keeps inside the tenant: a
// tenant user who deletes one gets it back; switching one off removes it.
type AddonsSpec struct {
	// CoreDNS is the cluster DNS.
	// +kubebuilder:default={}
	// +optional
	CoreDNS AddonSpec `json:"coreDNS,omitempty"`
	// KubeProxy implements Services on the tenant's nodes.
	// +kubebuilder:default={}
	// +optional
	KubeProxy AddonSpec `json:"kubeProxy,omitempty"`
	// Tunnel carries the API server's connections to nodes, pods and
	// Services (logs, exec, port-forward, webhooks, aggregated APIs, the
	// proxies) over connections an agent on every node opens, so nodes
	// behind NAT work. Off, the API server dials them directly and needs
	// a routed network to the nodes.
	// +kubebuilder:default={}
	// +optional
	Tunnel AddonSpec `json:"tunnel,omitempty"`
	// NetworkPolicy enforces the tenant's NetworkPolicies on its nodes with
	// Calico's Felix, and gives nodes their pod network with Calico's CNI
	// plugin (addresses from the node's pod range, a routed interface per
	// pod). Switching it off removes Felix: pods keep their network and
	// lose enforcement; Calico's CRDs, and any Calico policies a tenant
	// user wrote, stay.
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy AddonSpec `json:"networkPolicy,omitempty"`
}

// AddonSpec switches one addon.
type AddonSpec struct {
	// Enabled keeps the addon in the tenant.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// IsEnabled reports whether the addon is on (the default).
func (a AddonSpec) IsEnabled() bool { return a.Enabled == nil || *a.Enabled }

// ControlPlaneSpec shapes the control-plane Deployment.
type ControlPlaneSpec struct {
	// Replicas of the control-plane pod (API server, controller manager
	// and scheduler together).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// ImageRegistry overrides the registry the component images come
	// from (the operator's default when empty).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9.:-]*[a-z0-9])?(/[a-z0-9._-]+)*$`
	// +optional
	ImageRegistry string `json:"imageRegistry,omitempty"`

	// Resources of the API server container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// ExtraArgs are added to the API server's command line, as
	// "--flag=value" strings. Only flags that cannot weaken
	// authentication, authorization, TLS, storage or encryption are
	// allowed (docs/api.md lists them; internal/controlplane's
	// AllowedAPIServerFlags is the same list).
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^--[a-z0-9-]+(=.*)?$`
	// +kubebuilder:validation:XValidation:rule="self.all(a, a.matches('^--(oidc-issuer-url|oidc-client-id|oidc-username-claim|oidc-username-prefix|oidc-groups-claim|oidc-groups-prefix|oidc-required-claim|oidc-signing-algs|max-requests-inflight|max-mutating-requests-inflight|request-timeout|min-request-timeout|default-watch-cache-size|watch-cache-sizes|event-ttl|goaway-chance|delete-collection-workers|default-not-ready-toleration-seconds|default-unreachable-toleration-seconds|etcd-compaction-interval|service-node-port-range)(=.*)?$'))",message="spec.controlPlane.extraArgs: a flag is not allowed: only flags that cannot weaken authentication, authorization, TLS, storage or encryption may be set (the allowed list is in docs/api.md, extraArgs)",messageExpression="'spec.controlPlane.extraArgs: flag ' + self.filter(a, !a.matches('^--(oidc-issuer-url|oidc-client-id|oidc-username-claim|oidc-username-prefix|oidc-groups-claim|oidc-groups-prefix|oidc-required-claim|oidc-signing-algs|max-requests-inflight|max-mutating-requests-inflight|request-timeout|min-request-timeout|default-watch-cache-size|watch-cache-sizes|event-ttl|goaway-chance|delete-collection-workers|default-not-ready-toleration-seconds|default-unreachable-toleration-seconds|etcd-compaction-interval|service-node-port-range)(=.*)?$'))[0].find('^-*[a-z0-9-]*') + ' is not allowed: only flags that cannot weaken authentication, authorization, TLS, storage or encryption may be set (the allowed list is in docs/api.md, extraArgs)'",reason="FieldValueForbidden"
	// +optional
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// ExposureSpec says how the API server is reached.
type ExposureSpec struct {
	// Type of the Service in front of the API server.
	// +kubebuilder:default=NodePort
	// +optional
	Type ExposureType `json:"type,omitempty"`

	// ExtraSANs are added to the API server's serving certificate.
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	ExtraSANs []string `json:"extraSANs,omitempty"`

	// Hostname, when set, is the name customers use; it becomes the
	// kubeconfig's server host and a SAN.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`
	// +optional
	Hostname string `json:"hostname,omitempty"`
}

// DatastorePlacement places a tenant's state.
type DatastorePlacement struct {
	// Name of the Datastore holding this tenant's state. Changing it
	// moves the tenant there while it runs (a live migration; its phase
	// is in status.migration, and status.datastore.name names the
	// Datastore serving the tenant until it completes).
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Name string `json:"name,omitempty"`

	// QuotaBytes caps the bytes of the tenant's keys and values in the
	// datastore (the Datastore's gateway.defaultQuotaBytes when unset). A
	// write past it fails as a full etcd does ("database space
	// exceeded"); deletes always pass.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Mi')) >= 0",message="datastore.quotaBytes must be at least 1Mi: a control plane alone needs about 1Mi"
	// +optional
	QuotaBytes *resource.Quantity `json:"quotaBytes,omitempty"`

	// Limits overrides the Datastore's per-tenant request and byte rates
	// for this tenant.
	// +optional
	Limits *TenantRateLimits `json:"limits,omitempty"`
}

// TenantRateLimits are the rates the datastore gateway lets one tenant's
// API servers reach; above them requests wait their turn.
type TenantRateLimits struct {
	// RequestsPerSecond is the sustained rate of datastore requests.
	// +kubebuilder:validation:Minimum=1
	// +optional
	RequestsPerSecond *int32 `json:"requestsPerSecond,omitempty"`
	// BytesPerSecond is the sustained rate of bytes written and read.
	// +optional
	BytesPerSecond *resource.Quantity `json:"bytesPerSecond,omitempty"`
}

// NetworkSpec holds the tenant cluster's address ranges.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="network is immutable: create a new cluster to change address ranges"
// +kubebuilder:validation:XValidation:rule="!(has(self.serviceCIDR) && has(self.dnsServiceIP) && isCIDR(self.serviceCIDR) && isIP(self.dnsServiceIP)) || cidr(self.serviceCIDR).containsIP(self.dnsServiceIP)",message="network.dnsServiceIP must lie inside network.serviceCIDR"
// +kubebuilder:validation:XValidation:rule="!(has(self.serviceCIDR) && has(self.podCIDR) && isCIDR(self.serviceCIDR) && isCIDR(self.podCIDR)) || (!cidr(self.serviceCIDR).containsCIDR(cidr(self.podCIDR).masked()) && !cidr(self.podCIDR).containsCIDR(cidr(self.serviceCIDR).masked()) && !cidr(self.serviceCIDR).containsIP(cidr(self.podCIDR).ip()) && !cidr(self.podCIDR).containsIP(cidr(self.serviceCIDR).ip()))",message="network.serviceCIDR and network.podCIDR must not overlap"
type NetworkSpec struct {
	// ServiceCIDR is the range Service addresses come from.
	// +kubebuilder:default="10.96.0.0/16"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="network.serviceCIDR must be an IPv4 CIDR such as 10.96.0.0/16"
	// +optional
	ServiceCIDR string `json:"serviceCIDR,omitempty"`

	// PodCIDR is the range pod addresses come from.
	// +kubebuilder:default="10.244.0.0/16"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="network.podCIDR must be an IPv4 CIDR such as 10.244.0.0/16"
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`

	// ClusterDomain is the DNS domain of Services.
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`
	// +optional
	ClusterDomain string `json:"clusterDomain,omitempty"`

	// DNSServiceIP is the cluster DNS Service's address.
	// +kubebuilder:default="10.96.0.10"
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="network.dnsServiceIP must be an IPv4 address such as 10.96.0.10"
	// +optional
	DNSServiceIP string `json:"dnsServiceIP,omitempty"`
}

// TenantClusterStatus is what the operator observed.
type TenantClusterStatus struct {
	// Conditions: Ready summarises DatastoreReady, CertificatesReady and
	// ControlPlaneAvailable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Endpoint is the API server's URL.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Version is the Kubernetes version the control plane runs: set once
	// every ready control-plane pod runs it and no pod of an earlier
	// version is left. While spec.version differs, the Upgrading
	// condition says where the upgrade stands.
	// +optional
	Version string `json:"version,omitempty"`

	// AdminKubeconfigSecret names the Secret (key "kubeconfig") holding
	// the customer's admin kubeconfig.
	// +optional
	AdminKubeconfigSecret string `json:"adminKubeconfigSecret,omitempty"`

	// Datastore reports where the state lives.
	// +optional
	Datastore TenantDatastoreStatus `json:"datastore,omitempty"`

	// Migration reports the last (or running) move of the tenant to
	// another Datastore.
	// +optional
	Migration *TenantMigrationStatus `json:"migration,omitempty"`

	// Encryption reports how the tenant's Secrets are encrypted at rest
	// and where a key rotation stands.
	// +optional
	Encryption TenantEncryptionStatus `json:"encryption,omitempty"`

	// Hibernation says whether the control plane sleeps, and since when.
	// +optional
	Hibernation TenantHibernationStatus `json:"hibernation,omitempty"`

	// Certificates reports when the tenant's certificates expire and are
	// renewed, and the last rotation.
	// +optional
	Certificates TenantCertificatesStatus `json:"certificates,omitempty"`

	// Backup reports the backup schedule: the last scheduled and
	// successful backups and the next slot.
	// +optional
	Backup *TenantBackupScheduleStatus `json:"backup,omitempty"`
}

// TenantCertificatesStatus reports the certificates the operator holds
// for a tenant. The keys are in the Secret <name>-pki, never in status.
type TenantCertificatesStatus struct {
	// NotAfter is when the first of the tenant's leaf certificates
	// expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// RenewalTime is when the operator next renews a leaf certificate
	// (two thirds into its life).
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
	// CANotAfter is when the tenant CA expires.
	// +optional
	CANotAfter *metav1.Time `json:"caNotAfter,omitempty"`
	// ObservedRotation is the value of the annotation
	// kubinception.dev/certificate-rotation-requested that the last
	// rotation on request answered.
	// +optional
	ObservedRotation string `json:"observedRotation,omitempty"`
	// LastRotationTime is when the operator last reissued leaf
	// certificates, by schedule or on request.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// CARotation reports the last (or running) rotation of the tenant's
	// CAs and service-account key (annotation kubinception.dev/ca-rotation).
	// +optional
	CARotation *CARotationStatus `json:"caRotation,omitempty"`
}

// EncryptionPhase is where a tenant's encryption key stands. A rotation
// goes KeyAdded → KeyPromoted → Rewriting → OldKeyRemoved → Idle, each
// step waiting until every API server runs the configuration of the
// step before it.
// +kubebuilder:validation:Enum=Idle;KeyAdded;KeyPromoted;Rewriting;OldKeyRemoved
type EncryptionPhase string

// Phases of a tenant's encryption key.
const (
	// EncryptionIdle: one key, which every Secret is written with.
	EncryptionIdle EncryptionPhase = "Idle"
	// EncryptionKeyAdded: the new key is in the configuration as a read
	// key; writes still use the old one until every API server can read
	// the new.
	EncryptionKeyAdded EncryptionPhase = "KeyAdded"
	// EncryptionKeyPromoted: the new key writes; the old one still reads.
	EncryptionKeyPromoted EncryptionPhase = "KeyPromoted"
	// EncryptionRewriting: every API server writes with the new key; the
	// operator rewrites every Secret through the tenant's API.
	EncryptionRewriting EncryptionPhase = "Rewriting"
	// EncryptionOldKeyRemoved: every Secret is written with the new key;
	// the old key leaves the configuration.
	EncryptionOldKeyRemoved EncryptionPhase = "OldKeyRemoved"
)

// TenantEncryptionStatus reports how a tenant's Secrets are encrypted at
// rest in the datastore. The keys themselves are in the Secret
// <name>-encryption of the TenantCluster's namespace, never in status.
type TenantEncryptionStatus struct {
	// Provider is the kube-apiserver encryption provider ("secretbox").
	// +optional
	Provider string `json:"provider,omitempty"`
	// KeyName is the key every Secret is written with when no rotation
	// runs: stored values begin with k8s:enc:<provider>:v1:<keyName>:.
	// Empty until the first key is in place.
	// +optional
	KeyName string `json:"keyName,omitempty"`
	// NewKeyName is the key a running rotation moves to.
	// +optional
	NewKeyName string `json:"newKeyName,omitempty"`
	// Phase is where the key stands (Idle when no rotation runs).
	// +optional
	Phase EncryptionPhase `json:"phase,omitempty"`
	// ObservedRotation is the value of the annotation
	// kubinception.dev/encryption-key-rotation-requested that the last
	// finished (or the running) rotation answers.
	// +optional
	ObservedRotation string `json:"observedRotation,omitempty"`
	// SecretsRewritten counts the Secrets the last rewrite stored again
	// under the new key (those already under it are not written).
	// +optional
	SecretsRewritten int64 `json:"secretsRewritten,omitempty"`
	// LastRotationTime is when the last rotation finished.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
}

// TenantDatastoreStatus reports a tenant's place in its datastore.
type TenantDatastoreStatus struct {
	// Name is the Datastore serving the tenant: its control plane's
	// datastore certificate and gateway are this Datastore's. It differs
	// from spec.datastore.name while the tenant migrates.
	// +optional
	Name string `json:"name,omitempty"`
	// Prefix is the tenant's key prefix.
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// User is the tenant's etcd user.
	// +optional
	User string `json:"user,omitempty"`
	// UsedBytes is the bytes of the tenant's keys and values, as the
	// gateway counts them against the quota.
	// +optional
	UsedBytes int64 `json:"usedBytes,omitempty"`
	// Keys counts the tenant's keys.
	// +optional
	Keys int64 `json:"keys,omitempty"`
	// QuotaBytes is the quota in force.
	// +optional
	QuotaBytes int64 `json:"quotaBytes,omitempty"`
	// Usage reads as "12Mi of 2Gi (1%)".
	// +optional
	Usage string `json:"usage,omitempty"`
}

// TenantCluster is a customer cluster: its control plane runs as pods in
// this admin cluster and its state lives under its own prefix in a shared
// Datastore.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tc,categories=kubinception
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Running",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Datastore",type=string,JSONPath=`.status.datastore.usage`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name must be at most 40 characters: it prefixes the names of the control plane's objects"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label: lower-case letters, digits and '-', starting with a letter"
type TenantCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	Spec   TenantClusterSpec   `json:"spec,omitempty"`
	Status TenantClusterStatus `json:"status,omitempty"`
}

// TenantClusterList is a list of TenantClusters.
//
// +kubebuilder:object:root=true
type TenantClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantCluster `json:"items"`
}
