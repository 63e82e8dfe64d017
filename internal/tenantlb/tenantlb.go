// Package tenantlb renders, in the admin cluster, the load balancer of a
// tenant Service of type LoadBalancer: the operator is the tenant's cloud
// provider for Services. Each such Service gets a Deployment of
// `kubinception lb` (forwarding the Service's ports to its node ports on
// healthy tenant nodes, through the node tunnel) behind an admin-cluster
// Service of type LoadBalancer, whose address the operator writes into the
// tenant Service's status.
package tenantlb

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/lb"
)

// Labels and annotations of a tenant load balancer's objects.
const (
	// LabelComponent's value for load balancers.
	Component = "load-balancer"
	// AnnotationService names the tenant Service (namespace/name).
	AnnotationService = "kubinception.dev/tenant-service"
	// HTTPPort serves the load balancer's /healthz and /metrics.
	HTTPPort = 9090
	// mountPath holds the tunnel client certificate and the tenant CA.
	mountPath = "/etc/kubinception/lb"
)

// Params describe one tenant Service's load balancer.
type Params struct {
	// Tenant is the TenantCluster's name; Namespace its namespace in the
	// admin cluster, where the objects go.
	Tenant    string
	Namespace string
	// Service is the tenant Service.
	Service types.NamespacedName
	Ports   []lb.Port
	// Image is the kubinception image.
	Image string
	// Tunnel is host:port of the tunnel servers' client port; ServerName
	// the name their certificate carries.
	Tunnel     string
	ServerName string
	// PKISecret holds the tenant CA and the tunnel client certificate.
	PKISecret string
	Replicas  int32
}

// Name is the admin objects' name for a tenant Service: the tenant's name
// and a hash of the Service's namespace and name (tenant names are short,
// Service names need not be).
func Name(tenant string, svc types.NamespacedName) string {
	sum := sha256.Sum256([]byte(svc.String()))
	return tenant + "-lb-" + hex.EncodeToString(sum[:])[:10]
}

// Labels select a tenant's load balancers (all of them without name).
func Labels(tenant, name string) map[string]string {
	l := map[string]string{controlplane.LabelTenant: tenant, controlplane.LabelComponent: Component}
	if name != "" {
		l["kubinception.dev/load-balancer"] = name
	}
	return l
}

// Ports are the load balancer's ports for a tenant Service: every TCP
// port with a node port. The others are returned apart, to be reported.
func Ports(svc *corev1.Service) (ports []lb.Port, skipped []string) {
	for i, p := range svc.Spec.Ports {
		name := p.Name
		if name == "" {
			name = "port-" + strconv.Itoa(i)
		}
		switch {
		case p.Protocol != "" && p.Protocol != corev1.ProtocolTCP:
			skipped = append(skipped, fmt.Sprintf("%s (%s: only TCP is served)", name, p.Protocol))
		case p.NodePort == 0:
			skipped = append(skipped, name+" (no node port allocated yet)")
		default:
			ports = append(ports, lb.Port{Name: name, Listen: p.Port, NodePort: p.NodePort})
		}
	}
	return ports, skipped
}

// Deployment runs the load balancer.
func Deployment(p Params) *appsv1.Deployment {
	name := Name(p.Tenant, p.Service)
	labels := Labels(p.Tenant, name)
	args := []string{"lb", "--tunnel=" + p.Tunnel, "--server-name=" + p.ServerName,
		"--ca-file=" + mountPath + "/ca.crt", "--cert-file=" + mountPath + "/tls.crt", "--key-file=" + mountPath + "/tls.key",
		"--http-address=:" + strconv.Itoa(HTTPPort)}
	var ports []corev1.ContainerPort
	for _, port := range p.Ports {
		args = append(args, fmt.Sprintf("--port=%s:%d:%d", port.Name, port.Listen, port.NodePort))
		ports = append(ports, corev1.ContainerPort{ContainerPort: port.Listen, Protocol: corev1.ProtocolTCP})
	}
	replicas := p.Replicas
	maxUnavailable := intstr.FromInt32(0)
	mode := int32(0o400)
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationService: p.Service.String()}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{AnnotationService: p.Service.String()}},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: new(bool),
					EnableServiceLinks:           new(bool),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: "kubernetes.io/hostname"},
						}},
					}},
					Containers: []corev1.Container{{
						Name: "lb", Image: p.Image, ImagePullPolicy: corev1.PullIfNotPresent, Args: args, Ports: ports,
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/healthz", Port: intstr.FromInt32(HTTPPort)}}, PeriodSeconds: 2},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
						VolumeMounts: []corev1.VolumeMount{{Name: "tunnel", MountPath: mountPath, ReadOnly: true}},
					}},
					// Only the tenant CA's certificate and the tunnel client
					// certificate of the PKI Secret: nothing else of it.
					Volumes: []corev1.Volume{{Name: "tunnel", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
						SecretName: p.PKISecret, DefaultMode: &mode,
						Items: []corev1.KeyToPath{
							{Key: controlplane.FileCA, Path: "ca.crt"},
							{Key: controlplane.FileTunnelClient, Path: "tls.crt"},
							{Key: controlplane.FileTunnelClientKey, Path: "tls.key"},
						},
					}}}},
				},
			},
		},
	}
}

// Service is the admin cluster's LoadBalancer Service in front of the
// load balancer's pods: its address becomes the tenant Service's.
func Service(p Params) *corev1.Service {
	name := Name(p.Tenant, p.Service)
	labels := Labels(p.Tenant, name)
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationService: p.Service.String()}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels},
	}
	for _, port := range p.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: port.Name, Protocol: corev1.ProtocolTCP,
			Port: port.Listen, TargetPort: intstr.FromInt32(port.Listen)})
	}
	return svc
}
