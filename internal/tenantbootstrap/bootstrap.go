package tenantbootstrap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"kubinception.dev/kubinception/internal/kubeconfig"
)

// Groups and names kubeadm uses; joining nodes rely on them.
const (
	BootstrapGroup = "system:bootstrappers:kubeadm:default-node-token"
	NodesGroup     = "system:nodes"
	// ManagedLabel marks every object the operator keeps in a tenant.
	ManagedLabel = "kubinception.dev/addon"
)

// Params describe one tenant cluster.
type Params struct {
	// Endpoint is the API server URL nodes join.
	Endpoint string
	// APIServerAddress and APIServerPort are what every replica of the
	// API server advertises (--advertise-address, --secure-port): the
	// one endpoint of the kubernetes Service.
	APIServerAddress string
	APIServerPort    int32
	// CAPEM is the tenant's cluster CA.
	CAPEM             []byte
	KubernetesVersion string
	ServiceCIDR       string
	PodCIDR           string
	ClusterDomain     string
	DNSServiceIP      string
	KubeProxyImage    string
	CoreDNSImage      string
	KubeProxy         bool
	CoreDNS           bool
	// Tunnel puts the tunnel agent on every node: it connects to
	// TunnelServer (host:port) with the agent certificate and key, runs
	// from TunnelImage.
	Tunnel         bool
	TunnelServer   string
	TunnelImage    string
	TunnelAgentPEM []byte
	TunnelKeyPEM   []byte
	// NetworkPolicy runs Calico (CNI plugin and Felix) on every node from
	// CalicoImage.
	NetworkPolicy bool
	CalicoImage   string
}

// TunnelAgentName names the tunnel agent's DaemonSet and Secret in
// kube-system.
const TunnelAgentName = "kubinception-tunnel-agent"

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func meta(name, namespace, addon string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{ManagedLabel: addon}}
}

// Objects renders every object in apply order.
func Objects(p Params) ([]client.Object, error) {
	clusterInfo, err := kubeconfig.RenderCluster(p.Endpoint, p.CAPEM)
	if err != nil {
		return nil, err
	}
	kubeadmConfig, err := yaml.Marshal(map[string]any{
		"apiVersion":           "kubeadm.k8s.io/v1beta4",
		"kind":                 "ClusterConfiguration",
		"kubernetesVersion":    p.KubernetesVersion,
		"controlPlaneEndpoint": hostPort(p.Endpoint),
		"clusterName":          "kubernetes",
		"certificatesDir":      "/etc/kubernetes/pki",
		"imageRepository":      "registry.k8s.io",
		"networking":           map[string]any{"serviceSubnet": p.ServiceCIDR, "podSubnet": p.PodCIDR, "dnsDomain": p.ClusterDomain},
		"apiServer":            map[string]any{},
		"controllerManager":    map[string]any{},
		"scheduler":            map[string]any{},
		"etcd":                 map[string]any{"external": map[string]any{"endpoints": []string{"https://datastore.invalid:2379"}}},
		"dns":                  map[string]any{},
		"proxy":                map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	kubeletConfig := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
`+KubeletAccess("/etc/kubernetes/pki/ca.crt")+`cgroupDriver: cgroupfs
clusterDNS:
- %s
clusterDomain: %s
rotateCertificates: true
serverTLSBootstrap: true
staticPodPath: /etc/kubernetes/manifests
`, p.DNSServiceIP, p.ClusterDomain)

	readConfigMap := func(name, cm string) []client.Object {
		return []client.Object{
			&rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(name, "kube-system", "bootstrap"),
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{cm}, Verbs: []string{"get"}}}},
			&rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta(name, "kube-system", "bootstrap"),
				RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: BootstrapGroup},
					{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: NodesGroup}}},
		}
	}
	groupBinding := func(name, role, group string) client.Object {
		return &rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: meta(name, "", "bootstrap"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: group}}}
	}

	objs := []client.Object{
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta("cluster-info", "kube-public", "bootstrap"),
			Data: map[string]string{"kubeconfig": string(clusterInfo)}},
		&rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta("kubeadm:bootstrap-signer-clusterinfo", "kube-public", "bootstrap"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"cluster-info"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta("kubeadm:bootstrap-signer-clusterinfo", "kube-public", "bootstrap"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubeadm:bootstrap-signer-clusterinfo"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "system:anonymous"}}},
		groupBinding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", BootstrapGroup),
		groupBinding("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", BootstrapGroup),
		groupBinding("kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", NodesGroup),
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: meta("kubeadm:get-nodes", "", "bootstrap"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}}},
		groupBinding("kubeadm:get-nodes", "kubeadm:get-nodes", BootstrapGroup),
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta("kubeadm-config", "kube-system", "bootstrap"),
			Data: map[string]string{"ClusterConfiguration": string(kubeadmConfig)}},
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta("kubelet-config", "kube-system", "bootstrap"),
			Data: map[string]string{"kubelet": kubeletConfig}},
	}
	objs = append(objs, readConfigMap("kubeadm:nodes-kubeadm-config", "kubeadm-config")...)
	endpoints, err := kubernetesEndpoints(p)
	if err != nil {
		return nil, err
	}
	objs = append(objs, endpoints...)
	objs = append(objs, readConfigMap("kubeadm:kubelet-config", "kubelet-config")...)
	if p.KubeProxy {
		objs = append(objs, kubeProxy(p)...)
	}
	if p.CoreDNS {
		objs = append(objs, coreDNS(p)...)
	}
	if p.Tunnel {
		objs = append(objs, tunnelAgent(p)...)
	}
	if p.NetworkPolicy {
		np, err := networkPolicy(p)
		if err != nil {
			return nil, err
		}
		objs = append(objs, np...)
	}
	rollOnCABundle(objs, p.CAPEM)
	return objs, nil
}

// kubernetesEndpoints are the Endpoints and the EndpointSlice of the
// kubernetes Service in default, through which pods reach the API server.
// The operator writes them, not the API servers (which run with
// --endpoint-reconciler-type=none): every replica advertises the same
// address and port, so the one endpoint never changes and needs no
// refresh. The API servers' own reconciler renewed a lease on that
// address every 10 seconds (18 of an idle tenant's 26 datastore writes a
// minute), and a replica stopping removed the address every other
// replica still serves. The Endpoints are marked not to be mirrored, as
// the API server marks them: the slice is written beside them.
func kubernetesEndpoints(p Params) ([]client.Object, error) {
	ip := net.ParseIP(p.APIServerAddress)
	if ip == nil || p.APIServerPort <= 0 {
		return nil, fmt.Errorf("the kubernetes Service's endpoint needs the API server's advertised address and port, have %q and %d", p.APIServerAddress, p.APIServerPort)
	}
	family := discoveryv1.AddressTypeIPv4
	if ip.To4() == nil {
		family = discoveryv1.AddressTypeIPv6
	}
	name, port, protocol, ready := "https", p.APIServerPort, corev1.ProtocolTCP, true
	endpoints := &corev1.Endpoints{TypeMeta: tm("v1", "Endpoints"), ObjectMeta: meta("kubernetes", metav1.NamespaceDefault, "bootstrap"),
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: p.APIServerAddress}},
			Ports:     []corev1.EndpointPort{{Name: name, Port: port, Protocol: protocol}},
		}}}
	endpoints.Labels[discoveryv1.LabelSkipMirror] = "true"
	slice := &discoveryv1.EndpointSlice{TypeMeta: tm("discovery.k8s.io/v1", "EndpointSlice"), ObjectMeta: meta("kubernetes", metav1.NamespaceDefault, "bootstrap"),
		AddressType: family,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{p.APIServerAddress}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &protocol}}}
	slice.Labels[discoveryv1.LabelServiceName] = "kubernetes"
	return []client.Object{endpoints, slice}, nil
}

// AnnotationCABundle, on the pod templates of the addons, is a hash of
// the CA bundle while it holds more than one CA (a CA rotation
// overlaps): the addons restart to load the bundle, since a client reads
// its CA file once, and stay on the old CA otherwise, which is removed at
// the rotation's end.
const AnnotationCABundle = "kubinception.dev/ca-bundle"

func rollOnCABundle(objs []client.Object, caPEM []byte) {
	if bytes.Count(caPEM, []byte("-----BEGIN CERTIFICATE-----")) < 2 {
		return
	}
	sum := sha256.Sum256(caPEM)
	hash := hex.EncodeToString(sum[:8])
	for _, o := range objs {
		var tmpl *corev1.PodTemplateSpec
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			tmpl = &o.Spec.Template
		case *appsv1.Deployment:
			tmpl = &o.Spec.Template
		default:
			continue
		}
		if tmpl.Annotations == nil {
			tmpl.Annotations = map[string]string{}
		}
		tmpl.Annotations[AnnotationCABundle] = hash
	}
}

// hostPort strips the scheme from an https URL.
func hostPort(endpoint string) string {
	const prefix = "https://"
	if len(endpoint) > len(prefix) && endpoint[:len(prefix)] == prefix {
		return endpoint[len(prefix):]
	}
	return endpoint
}

func kubeProxy(p Params) []client.Object {
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %s
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.PodCIDR)
	kubeconfigConf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: %s
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
`, p.Endpoint)
	privileged := true
	hostPathFileOrCreate := corev1.HostPathFileOrCreate
	return []client.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta("kube-proxy", "kube-system", "kube-proxy")},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: meta("kubeadm:node-proxier", "", "kube-proxy"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node-proxier"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kube-proxy", Namespace: "kube-system"}}},
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta("kube-proxy", "kube-system", "kube-proxy"),
			Data: map[string]string{"config.conf": config, "kubeconfig.conf": kubeconfigConf}},
		&rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta("kube-proxy", "kube-system", "kube-proxy"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"kube-proxy"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta("kube-proxy", "kube-system", "kube-proxy"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kube-proxy"},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: BootstrapGroup}}},
		nodeDaemonSet("kube-proxy", "kube-proxy", corev1.PodSpec{
			ServiceAccountName: "kube-proxy",
			Containers: []corev1.Container{{
				Name:            "kube-proxy",
				Image:           p.KubeProxyImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"},
				Env:             []corev1.EnvVar{fieldEnv("NODE_NAME", "spec.nodeName")},
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "kube-proxy", MountPath: "/var/lib/kube-proxy"},
					{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "kube-proxy", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-proxy"}}}},
				{Name: "xtables-lock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/xtables.lock", Type: &hostPathFileOrCreate}}},
			},
		}),
	}
}

// nodeDaemonSet runs pod on every node of the tenant, as its addon addon:
// on the host network, with every taint tolerated and the priority of a
// node's own components, rolled a tenth of the nodes at a time. Pods are
// selected by k8s-app=name.
func nodeDaemonSet(name, addon string, pod corev1.PodSpec) *appsv1.DaemonSet {
	labels := map[string]string{"k8s-app": name}
	maxUnavailable := intstr.FromString("10%")
	pod.HostNetwork = true
	pod.PriorityClassName = "system-node-critical"
	pod.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	pod.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	return &appsv1.DaemonSet{TypeMeta: tm("apps/v1", "DaemonSet"), ObjectMeta: meta(name, "kube-system", addon),
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType, RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable}},
			Template:       corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		}}
}

// fieldEnv is an environment variable from a field of the pod.
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// tunnelAgent is the tunnel agent on every node (host network, every
// taint tolerated, as kube-proxy): it opens the connections the API server
// reaches the node's network through. Its certificate opens nothing but
// the tunnel: it names a user without any permission in the tenant.
func tunnelAgent(p Params) []client.Object {
	const dir = "/etc/kubinception/tunnel"
	secretMode := int32(0o400)
	return []client.Object{
		&corev1.Secret{TypeMeta: tm("v1", "Secret"), ObjectMeta: meta(TunnelAgentName, "kube-system", "tunnel"),
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: p.TunnelAgentPEM, corev1.TLSPrivateKeyKey: p.TunnelKeyPEM, "ca.crt": p.CAPEM}},
		nodeDaemonSet(TunnelAgentName, "tunnel", corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{
				Name:            "agent",
				Image:           p.TunnelImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"tunnel", "agent", "--server=" + p.TunnelServer,
					"--ca-file=" + dir + "/ca.crt", "--cert-file=" + dir + "/" + corev1.TLSCertKey, "--key-file=" + dir + "/" + corev1.TLSPrivateKeyKey,
					"--node-name=$(NODE_NAME)", "--node-address=$(HOST_IPS)"},
				Env: []corev1.EnvVar{fieldEnv("NODE_NAME", "spec.nodeName"), fieldEnv("HOST_IPS", "status.hostIPs")},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("5m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
				VolumeMounts: []corev1.VolumeMount{{Name: "tunnel", MountPath: dir, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "tunnel", VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: TunnelAgentName, DefaultMode: &secretMode},
			}}},
		}),
	}
}

func coreDNS(p Params) []client.Object {
	corefile := fmt.Sprintf(`.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes %s in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}
`, p.ClusterDomain)
	labels := map[string]string{"k8s-app": "kube-dns"}
	replicas := int32(1)
	noEscalation, readOnly := false, true
	return []client.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta("coredns", "kube-system", "coredns")},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: meta("system:coredns", "", "coredns"),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: meta("system:coredns", "", "coredns"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "coredns", Namespace: "kube-system"}}},
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta("coredns", "kube-system", "coredns"), Data: map[string]string{"Corefile": corefile}},
		&appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta("coredns", "kube-system", "coredns"),
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						PriorityClassName:  "system-cluster-critical",
						ServiceAccountName: "coredns",
						DNSPolicy:          corev1.DNSDefault,
						Tolerations:        []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}, {Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
						Containers: []corev1.Container{{
							Name:            "coredns",
							Image:           p.CoreDNSImage,
							ImagePullPolicy: corev1.PullIfNotPresent,
							Args:            []string{"-conf", "/etc/coredns/Corefile"},
							Ports: []corev1.ContainerPort{
								{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
								{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
								{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
							},
							Resources: corev1.ResourceRequirements{
								Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
								Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
							},
							ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}}, PeriodSeconds: 2},
							LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
								InitialDelaySeconds: 60, TimeoutSeconds: 5, FailureThreshold: 5},
							SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation, ReadOnlyRootFilesystem: &readOnly,
								Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}}},
							VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
						}},
						Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}}}}},
					},
				},
			}},
		&corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system",
			Labels: map[string]string{ManagedLabel: "coredns", "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
			Spec: corev1.ServiceSpec{
				Selector:  labels,
				ClusterIP: p.DNSServiceIP,
				Ports: []corev1.ServicePort{
					{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
					{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
					{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
				},
			}},
	}
}

// KubeletAccess is the KubeletConfiguration fields that close a kubelet's
// API to everyone but its cluster: no anonymous requests, clients
// authenticated by certificates of clientCAFile or by the API server's
// token review, every request authorised by the API server. Every kubelet
// of ours (tenants' nodes, the admin node) runs with them.
func KubeletAccess(clientCAFile string) string {
	return fmt.Sprintf(`authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
`, clientCAFile)
}
