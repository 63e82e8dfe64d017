package install

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/frontdoor"
)

// FrontDoorOptions shape the front door: one TLS endpoint for every
// tenant exposed as FrontDoor, routing by server name.
type FrontDoorOptions struct {
	// Domain is the base domain of tenants' names (<tenant>.<domain>);
	// empty installs no front door.
	Domain string
	// Replicas of the front door; two keep tenants reachable while one
	// restarts.
	Replicas int32
	// ServiceType is NodePort (one port on every node) or LoadBalancer.
	ServiceType corev1.ServiceType
	// Port is the Service's port; NodePort, for ServiceType NodePort,
	// its node port. Clients use the node port with NodePort, the port
	// with LoadBalancer.
	Port, NodePort int32
}

// Ports of the front door's pods: the proxy, and /healthz, /readyz and
// /metrics.
const (
	FrontDoorPort     = 8443
	FrontDoorHTTPPort = 8444
)

// DefaultFrontDoor is the front door `kubinception install` installs.
func DefaultFrontDoor() FrontDoorOptions {
	return FrontDoorOptions{Domain: "tenants.kubinception.internal", Replicas: 2, ServiceType: corev1.ServiceTypeNodePort, Port: 443, NodePort: 31443}
}

// ClientPort is the port clients reach the front door on.
func (f FrontDoorOptions) ClientPort() int32 {
	if f.ServiceType == corev1.ServiceTypeNodePort {
		return f.NodePort
	}
	return f.Port
}

// validate says what is wrong, naming the install flag.
func (f FrontDoorOptions) validate() error {
	if f.Domain == "" {
		return nil
	}
	if err := frontdoor.ValidateDomain("--front-door-domain", f.Domain); err != nil {
		return err
	}
	switch {
	case f.Replicas < 1:
		return fmt.Errorf("--front-door-replicas %d: give 1 or more (2 keep tenants reachable while one restarts)", f.Replicas)
	case f.ServiceType != corev1.ServiceTypeNodePort && f.ServiceType != corev1.ServiceTypeLoadBalancer:
		return fmt.Errorf("--front-door-service-type %q: use NodePort or LoadBalancer", f.ServiceType)
	case f.Port < 1 || f.Port > 65535:
		return frontdoor.PortError("--front-door-port", f.Port)
	case f.ServiceType == corev1.ServiceTypeNodePort && (f.NodePort < 30000 || f.NodePort > 32767):
		return fmt.Errorf("--front-door-node-port %d: give a port of the admin cluster's node-port range, 30000-32767 by default", f.NodePort)
	}
	return nil
}

// FrontDoorLabels select the front door's pods.
func FrontDoorLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": frontdoor.Name, "app.kubernetes.io/managed-by": "kubinception"}
}

// FrontDoorRules are all the front door may do, in its own namespace:
// read the routes the operator publishes and renew the activity Leases
// the operator creates. It can neither create a Lease nor write a route.
func FrontDoorRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "update"}},
	}
}

// frontDoorObjects are the front door's namespace, RBAC (its own, and the
// operator's in that namespace), Deployment, Service and NetworkPolicy.
func frontDoorObjects(o Options) []client.Object {
	f := o.FrontDoor
	if f.Domain == "" {
		return nil
	}
	ns := frontdoor.Namespace
	name := frontdoor.Name
	labels := FrontDoorLabels()
	sel := map[string]string{"app.kubernetes.io/name": name}
	rbac := "rbac.authorization.k8s.io/v1"
	nonRoot, uid := true, int64(65534)
	noEscalation := false
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(FrontDoorHTTPPort)}}, PeriodSeconds: 5}
	}
	tcp := corev1.ProtocolTCP
	port := func(p int32) *intstr.IntOrString { v := intstr.FromInt32(p); return &v }
	nodePortEnd := int32(32767)
	svcPort := corev1.ServicePort{Name: "https", Protocol: tcp, Port: f.Port, TargetPort: intstr.FromString("https")}
	if f.ServiceType == corev1.ServiceTypeNodePort {
		svcPort.NodePort = f.NodePort
	}
	return []client.Object{
		&corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}},
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}},
		&rbacv1.Role{TypeMeta: tm(rbac, "Role"), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Rules: FrontDoorRules()},
		&rbacv1.RoleBinding{TypeMeta: tm(rbac, "RoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}},
		// The operator publishes routes and creates, reads and deletes
		// activity Leases, in this namespace only.
		&rbacv1.Role{TypeMeta: tm(rbac, "Role"), ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: ns, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "patch", "delete"}},
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
			}},
		&rbacv1.RoleBinding{TypeMeta: tm(rbac, "RoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: ns, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}}},
		&appsv1.Deployment{
			TypeMeta:   tm("apps/v1", "Deployment"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &f.Replicas,
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: name,
						SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid},
						// Replicas on different nodes where there are several.
						Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}},
						}}}},
						Containers: []corev1.Container{{
							Name:            "frontdoor",
							Image:           o.Image,
							ImagePullPolicy: o.ImagePullPolicy,
							Args: []string{"frontdoor", "serve", fmt.Sprintf("--address=:%d", FrontDoorPort), fmt.Sprintf("--http-address=:%d", FrontDoorHTTPPort),
								"--namespace=" + ns},
							Env:            []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
							Ports:          []corev1.ContainerPort{{Name: "https", ContainerPort: FrontDoorPort}, {Name: "http", ContainerPort: FrontDoorHTTPPort}},
							LivenessProbe:  probe("/healthz"),
							ReadinessProbe: probe("/readyz"),
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi"),
							}},
							SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation,
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						}},
					},
				},
			},
		},
		&corev1.Service{
			TypeMeta:   tm("v1", "Service"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{
				Type:     f.ServiceType,
				Selector: sel,
				Ports:    []corev1.ServicePort{svcPort},
			},
		},
		// The front door is reached by anyone on its proxy port, and
		// reaches only tenants' control-plane pods (their API server, node
		// port range and tunnel ports) and the admin API server's port,
		// where it reads its routes and renews Leases.
		&networkingv1.NetworkPolicy{
			TypeMeta:   tm("networking.k8s.io/v1", "NetworkPolicy"),
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: sel},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(FrontDoorPort)}}}},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{
						To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{},
							PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{controlplane.LabelComponent: "control-plane"}}}},
						Ports: []networkingv1.NetworkPolicyPort{
							{Protocol: &tcp, Port: port(controlplane.DefaultPort)},
							{Protocol: &tcp, Port: port(controlplane.TunnelPort)},
							{Protocol: &tcp, Port: port(30000), EndPort: &nodePortEnd},
						},
					},
					{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(6443)}},
						To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}},
				},
			},
		},
	}
}
