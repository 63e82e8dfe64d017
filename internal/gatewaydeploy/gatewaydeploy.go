package gatewaydeploy

import (
	"fmt"
	"net"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kubinception.dev/kubinception/internal/pki"
)

// Ports of a gateway pod.
const (
	// ClientPort serves tenant API servers (etcd gRPC over TLS).
	ClientPort = 2379
	// HTTPPort serves /metrics, /usage, /healthz and /readyz.
	HTTPPort = 8080
	// AdminPort serves the admin API (per-tenant backup and restore) to
	// the operator's admin certificate only.
	AdminPort = 2381
)

// Labels and files.
const (
	LabelDatastore = "kubinception.dev/datastore"
	LabelComponent = "kubinception.dev/component"
	// AnnotationSecretHash rolls the gateway pods when a certificate
	// they mount changes.
	AnnotationSecretHash = "kubinception.dev/secret-hash"
	mountPath            = "/etc/kubinception/gateway"

	// Files of the Secret the gateway pods mount.
	FileServingCert   = "serving.crt"
	FileServingKey    = "serving.key"
	FileTenantCA      = "tenant-ca.crt"
	FileDatastoreCA   = "datastore-ca.crt"
	FileDatastoreCert = "datastore.crt"
	FileDatastoreKey  = "datastore.key"

	// Files of the tenant CA's Secret.
	FileCACert = "ca.crt"
	FileCAKey  = "ca.key"
)

// ServiceAccount is the gateway pods' account: read-only on TenantClusters
// and Datastores (kubinception install creates it and its role).
const ServiceAccount = "kubinception-gateway"

// Names of a Datastore's gateway objects. The tenant CA's key lives in a
// Secret of its own that no pod mounts: only the operator issues tenants'
// certificates.
func DeploymentName(datastore string) string { return "gateway-" + datastore }
func ServiceName(datastore string) string    { return "gateway-" + datastore }
func SecretName(datastore string) string     { return "gateway-" + datastore }
func CASecretName(datastore string) string   { return "gateway-" + datastore + "-ca" }

// Labels select a Datastore's gateway pods.
func Labels(datastore string) map[string]string {
	return map[string]string{LabelDatastore: datastore, LabelComponent: "gateway"}
}

// Params is everything a gateway's objects depend on.
type Params struct {
	Datastore string
	Namespace string
	Image     string
	// ImagePullPolicy of the gateway image (IfNotPresent for a local
	// admin cluster, which has no registry).
	ImagePullPolicy corev1.PullPolicy
	Replicas        int32
	Resources       corev1.ResourceRequirements
	// DatastoreEndpoints are the members' client URLs.
	DatastoreEndpoints []string
	// SecretHash is the hash of the mounted Secret's data.
	SecretHash string
	// CompactionInterval and limits are passed through as flags.
	ExtraArgs []string
}

// Endpoint is the URL tenant API servers use for the gateway behind a
// Service with the given cluster IP.
func Endpoint(clusterIP string) string {
	return "https://" + net.JoinHostPort(clusterIP, fmt.Sprint(ClientPort))
}

// AdminAddress is the host:port of the admin API of the gateway behind a
// Service with the given cluster IP.
func AdminAddress(clusterIP string) string {
	return net.JoinHostPort(clusterIP, fmt.Sprint(AdminPort))
}

// UsageURL is where the gateway behind a Service with the given cluster IP
// reports usage.
func UsageURL(clusterIP string) string {
	return "http://" + net.JoinHostPort(clusterIP, fmt.Sprint(HTTPPort)) + "/usage"
}

// ServingSpec is the gateway's serving certificate: valid for the
// Service's names and cluster IP, so tenant API servers verify it whichever
// they dial.
func ServingSpec(datastore, namespace, clusterIP string) pki.Spec {
	svc := ServiceName(datastore)
	spec := pki.Spec{CommonName: svc, Server: true,
		DNSNames: []string{svc, svc + "." + namespace, svc + "." + namespace + ".svc"}}
	if ip := net.ParseIP(clusterIP); ip != nil {
		spec.IPs = []net.IP{ip}
	}
	return spec
}

// Args are the gateway's flags.
func Args(p Params) []string {
	f := func(name string) string { return mountPath + "/" + name }
	args := []string{
		"gateway",
		"--datastore=" + p.Datastore,
		fmt.Sprintf("--listen-address=:%d", ClientPort),
		fmt.Sprintf("--http-address=:%d", HTTPPort),
		fmt.Sprintf("--admin-address=:%d", AdminPort),
		"--tls-cert-file=" + f(FileServingCert),
		"--tls-key-file=" + f(FileServingKey),
		"--tenant-ca-file=" + f(FileTenantCA),
		"--datastore-endpoints=" + strings.Join(p.DatastoreEndpoints, ","),
		"--datastore-ca-file=" + f(FileDatastoreCA),
		"--datastore-cert-file=" + f(FileDatastoreCert),
		"--datastore-key-file=" + f(FileDatastoreKey),
	}
	return append(args, p.ExtraArgs...)
}

// Service exposes the gateway inside the admin cluster.
func Service(p Params) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName(p.Datastore), Namespace: p.Namespace, Labels: Labels(p.Datastore)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: Labels(p.Datastore),
			Ports: []corev1.ServicePort{
				{Name: "etcd", Port: ClientPort, TargetPort: intstr.FromInt32(ClientPort), Protocol: corev1.ProtocolTCP},
				{Name: "http", Port: HTTPPort, TargetPort: intstr.FromInt32(HTTPPort), Protocol: corev1.ProtocolTCP},
				{Name: "admin", Port: AdminPort, TargetPort: intstr.FromInt32(AdminPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// Deployment runs the gateway: replicas spread across nodes when they can
// be, never more than one unavailable during a rollout, non-root with no
// capabilities, ready once it has counted every tenant's usage.
func Deployment(p Params) *appsv1.Deployment {
	nonRoot, noEscalation, readOnly := true, false, true
	uid := int64(65532)
	maxUnavailable, maxSurge := intstr.FromInt32(0), intstr.FromInt32(1)
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(HTTPPort)}},
			PeriodSeconds:    5,
			FailureThreshold: 3,
		}
	}
	labels := Labels(p.Datastore)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: DeploymentName(p.Datastore), Namespace: p.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &p.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{AnnotationSecretHash: p.SecretHash}},
				Spec: corev1.PodSpec{
					// The gateway reads TenantClusters and its Datastore
					// (limits) with a read-only account of its own.
					ServiceAccountName: ServiceAccount,
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
								TopologyKey:   corev1.LabelHostname,
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name:            "gateway",
						Image:           p.Image,
						ImagePullPolicy: p.ImagePullPolicy,
						Args:            Args(p),
						Ports: []corev1.ContainerPort{
							{Name: "etcd", ContainerPort: ClientPort, Protocol: corev1.ProtocolTCP},
							{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
							{Name: "admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
						},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources:      p.Resources,
						VolumeMounts:   []corev1.VolumeMount{{Name: "gateway", MountPath: mountPath, ReadOnly: true}},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation, ReadOnlyRootFilesystem: &readOnly,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
					Volumes: []corev1.Volume{{Name: "gateway", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: SecretName(p.Datastore)}}}},
				},
			},
		},
	}
}

// UsageURLFor is the /usage URL of the gateway serving endpoint (as
// Endpoint returns it).
func UsageURLFor(endpoint string) string {
	host := strings.TrimPrefix(endpoint, "https://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return UsageURL(host)
}
