package tenantbootstrap

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/calico"
)

// Names of the networkPolicy addon's objects in kube-system.
const (
	// NetworkPolicyAddon is the addon label value of its objects.
	NetworkPolicyAddon = "network-policy"
	// CalicoNodeName names the DaemonSet (upstream's name, so tenant users
	// and tools recognise it).
	CalicoNodeName = calico.FelixName
	// CalicoConfName is the CNI network file the installer writes on each
	// node; it sorts before any other pod network a node was given.
	CalicoConfName = "10-calico.conflist"
)

// networkPolicy is Calico in policy-only form on every node: an init
// container (upstream's CNI installer) puts the Calico CNI plugin and its
// network configuration on the node, Felix polices the node's pods, and a
// third container keeps the CNI plugin's token fresh. All three talk to the
// API server at the tenant's endpoint, so they work before kube-proxy does.
func networkPolicy(p Params) ([]client.Object, error) {
	u, err := url.Parse(p.Endpoint)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("endpoint %q is not a URL: the networkPolicy addon needs the API server's address", p.Endpoint)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	if _, err := strconv.Atoi(port); err != nil {
		return nil, fmt.Errorf("endpoint %q has no valid port", p.Endpoint)
	}
	cni, err := calico.CNI{NodeName: "__KUBERNETES_NODE_NAME__", Subnet: "usePodCidr", Kubeconfig: "__KUBECONFIG_FILEPATH__"}.Config()
	if err != nil {
		return nil, err
	}
	// The CRDs, then the roles, then ClusterInformation and the IPPool.
	objs, err := calico.Objects(calico.Params{Namespace: "kube-system", PodCIDRs: []string{p.PodCIDR},
		Labels: map[string]string{ManagedLabel: NetworkPolicyAddon}})
	if err != nil {
		return nil, err
	}

	api := []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: port},
	}
	felixEnv := append([]corev1.EnvVar{}, api...)
	felix := calico.Felix{}
	for _, kv := range felix.EnvList() {
		name, value, _ := strings.Cut(kv, "=")
		if name == "FELIX_FELIXHOSTNAME" {
			felixEnv = append(felixEnv, fieldEnv(name, "spec.nodeName"))
			continue
		}
		felixEnv = append(felixEnv, corev1.EnvVar{Name: name, Value: value})
	}
	privileged := true
	dirOrCreate, fileOrCreate := corev1.HostPathDirectoryOrCreate, corev1.HostPathFileOrCreate
	hostPath := func(name, path string, t *corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: t}}}
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Port: intstr.FromInt32(calico.HealthPort), Path: path}},
			PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 6,
		}
	}
	cniNet := corev1.VolumeMount{Name: "cni-net-dir", MountPath: "/host/etc/cni/net.d"}
	ds := nodeDaemonSet(CalicoNodeName, NetworkPolicyAddon, corev1.PodSpec{
		ServiceAccountName:            calico.FelixName,
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		InitContainers: []corev1.Container{{
			Name:            "install-cni",
			Image:           p.CalicoImage,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{"/usr/local/bin/install"},
			Env: append(append([]corev1.EnvVar{}, api...),
				corev1.EnvVar{Name: "CNI_CONF_NAME", Value: CalicoConfName},
				corev1.EnvVar{Name: "CNI_NETWORK_CONFIG", Value: cni},
				corev1.EnvVar{Name: "SLEEP", Value: "false"},
				fieldEnv("KUBERNETES_NODE_NAME", "spec.nodeName"),
			),
			SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
			VolumeMounts:    []corev1.VolumeMount{{Name: "cni-bin-dir", MountPath: "/host/opt/cni/bin"}, cniNet},
		}},
		Containers: []corev1.Container{
			{
				Name:            "felix",
				Image:           p.CalicoImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"/usr/local/bin/calico-felix", "-c", "/dev/null"},
				Env:             felixEnv,
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("20m"),
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
				ReadinessProbe: probe("/readiness"),
				LivenessProbe:  probe("/liveness"),
				VolumeMounts: []corev1.VolumeMount{
					{Name: "var-lib-calico", MountPath: "/var/lib/calico"},
					{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
					{Name: "lib-modules", MountPath: "/lib/modules", ReadOnly: true},
				},
			},
			{
				// Upstream's CNI token refresher: rewrites the CNI plugin's
				// kubeconfig before its ServiceAccount token expires.
				Name:            "cni-token",
				Image:           p.CalicoImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"/usr/local/bin/calico-cni-token"},
				Env:             api,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("1m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
				VolumeMounts: []corev1.VolumeMount{cniNet},
			},
		},
		Volumes: []corev1.Volume{
			hostPath("cni-bin-dir", "/opt/cni/bin", &dirOrCreate),
			hostPath("cni-net-dir", "/etc/cni/net.d", &dirOrCreate),
			hostPath("var-lib-calico", "/var/lib/calico", &dirOrCreate),
			hostPath("xtables-lock", "/run/xtables.lock", &fileOrCreate),
			hostPath("lib-modules", "/lib/modules", nil),
		},
	})
	return append(objs, ds), nil
}
