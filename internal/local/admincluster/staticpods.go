package admincluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ConfigHashAnnotation records a hash of the certificates and
// configuration files the static pods read, so that reissuing a
// certificate changes the manifests and the kubelet restarts the pods.
const ConfigHashAnnotation = "kubinception.dev/config-hash"

// ImageDigestAnnotation records the digest of a static pod's image, so
// that a rebuilt image under the same tag changes the manifest and the
// kubelet restarts the pod.
const ImageDigestAnnotation = "kubinception.dev/image-digest"

// staticPod is one rendered manifest.
type staticPod struct {
	File string
	Pod  corev1.Pod
}

// Marshal renders the manifest as YAML.
func (s staticPod) Marshal() ([]byte, error) { return yaml.Marshal(s.Pod) }

// staticPods renders every static pod of the admin node: the admin control
// plane, kube-proxy and the datastore members. digests maps image
// references to manifest digests.
func staticPods(c Config, digests map[string]string, configHash string) []staticPod {
	p := c.paths()
	node := c.NodeIP.String()
	pki := p.PKI()
	etcdURL := "https://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd)
	pods := []staticPod{
		{File: "etcd.yaml", Pod: hostPod(c, digests, "etcd", c.Images.Etcd(), []string{
			"--name=" + c.NodeName,
			"--data-dir=" + p.EtcdData(),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=https://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd+1),
			"--initial-advertise-peer-urls=https://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd+1),
			"--initial-cluster=" + c.NodeName + "=https://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd+1),
			"--listen-metrics-urls=http://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd+2),
			"--client-cert-auth=true",
			"--trusted-ca-file=" + pki + "/etcd-ca.crt",
			"--cert-file=" + pki + "/etcd-server.crt",
			"--key-file=" + pki + "/etcd-server.key",
			"--peer-client-cert-auth=true",
			"--peer-trusted-ca-file=" + pki + "/etcd-ca.crt",
			"--peer-cert-file=" + pki + "/etcd-server.crt",
			"--peer-key-file=" + pki + "/etcd-server.key",
			"--snapshot-count=10000",
		}, []string{pki, p.EtcdData()}, "20m", false)},
		{File: "kube-apiserver.yaml", Pod: hostPod(c, digests, "kube-apiserver", c.Images.Component("kube-apiserver"), []string{
			"--advertise-address=" + node,
			"--bind-address=" + node,
			"--secure-port=" + strconv.Itoa(c.Ports.APIServer),
			"--etcd-servers=" + etcdURL,
			"--etcd-cafile=" + pki + "/etcd-ca.crt",
			"--etcd-certfile=" + pki + "/apiserver-etcd-client.crt",
			"--etcd-keyfile=" + pki + "/apiserver-etcd-client.key",
			"--client-ca-file=" + pki + "/ca.crt",
			"--tls-cert-file=" + pki + "/apiserver.crt",
			"--tls-private-key-file=" + pki + "/apiserver.key",
			"--kubelet-client-certificate=" + pki + "/apiserver-kubelet-client.crt",
			"--kubelet-client-key=" + pki + "/apiserver-kubelet-client.key",
			"--kubelet-preferred-address-types=InternalIP",
			"--proxy-client-cert-file=" + pki + "/front-proxy-client.crt",
			"--proxy-client-key-file=" + pki + "/front-proxy-client.key",
			"--requestheader-client-ca-file=" + pki + "/front-proxy-ca.crt",
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-username-headers=X-Remote-User",
			"--service-account-issuer=https://kubernetes.default.svc." + c.ClusterDomain,
			"--service-account-key-file=" + pki + "/sa.pub",
			"--service-account-signing-key-file=" + pki + "/sa.key",
			"--service-cluster-ip-range=" + c.ServiceCIDR.String(),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--enable-bootstrap-token-auth=true",
			"--allow-privileged=true",
			"--profiling=false",
		}, []string{pki}, "100m", false)},
		{File: "kube-controller-manager.yaml", Pod: hostPod(c, digests, "kube-controller-manager", c.Images.Component("kube-controller-manager"), []string{
			"--kubeconfig=" + p.Kubeconfig("controller-manager"),
			"--authentication-kubeconfig=" + p.Kubeconfig("controller-manager"),
			"--authorization-kubeconfig=" + p.Kubeconfig("controller-manager"),
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.Ports.ControllerManager),
			"--client-ca-file=" + pki + "/ca.crt",
			"--requestheader-client-ca-file=" + pki + "/front-proxy-ca.crt",
			"--cluster-signing-cert-file=" + pki + "/ca.crt",
			"--cluster-signing-key-file=" + pki + "/ca.key",
			"--root-ca-file=" + pki + "/ca.crt",
			"--service-account-private-key-file=" + pki + "/sa.key",
			"--service-cluster-ip-range=" + c.ServiceCIDR.String(),
			"--cluster-cidr=" + c.PodCIDR.String(),
			"--use-service-account-credentials=true",
			"--controllers=*,bootstrapsigner,tokencleaner",
			"--profiling=false",
		}, []string{pki, p.Config()}, "20m", false)},
		{File: "kube-scheduler.yaml", Pod: hostPod(c, digests, "kube-scheduler", c.Images.Component("kube-scheduler"), []string{
			"--kubeconfig=" + p.Kubeconfig("scheduler"),
			"--authentication-kubeconfig=" + p.Kubeconfig("scheduler"),
			"--authorization-kubeconfig=" + p.Kubeconfig("scheduler"),
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.Ports.Scheduler),
			"--profiling=false",
		}, []string{p.Config()}, "20m", false)},
	}

	proxy := hostPod(c, digests, "kube-proxy", c.Images.Component("kube-proxy"), []string{
		"--config=/etc/kube-proxy/config.yaml",
	}, []string{"/run/xtables.lock", "/lib/modules"}, "10m", true)
	proxy.Spec.Volumes = append(proxy.Spec.Volumes, corev1.Volume{Name: "kube-proxy-config", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: p.join("config", "kube-proxy")},
	}})
	proxy.Spec.Containers[0].VolumeMounts = append(proxy.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "kube-proxy-config", MountPath: "/etc/kube-proxy", ReadOnly: true})
	pods = append(pods, staticPod{File: "kube-proxy.yaml", Pod: proxy})

	for _, ds := range c.datastores() {
		dpki := ds.pkiDir()
		for i := 0; i < DatastoreMembers; i++ {
			name := ds.member(i)
			client := "https://" + net.JoinHostPort(node, strconv.Itoa(ds.clientPort(i)))
			peer := "https://" + net.JoinHostPort(node, strconv.Itoa(ds.peerPort(i)))
			pod := hostPod(c, digests, name, c.Images.Etcd(), []string{
				"--name=" + name,
				"--data-dir=" + ds.dataDir(i),
				"--listen-client-urls=" + client + ",https://127.0.0.1:" + strconv.Itoa(ds.clientPort(i)),
				"--advertise-client-urls=" + client,
				"--listen-peer-urls=" + peer,
				"--initial-advertise-peer-urls=" + peer,
				"--initial-cluster=" + ds.initialCluster(),
				"--initial-cluster-state=new",
				"--initial-cluster-token=" + ds.clusterToken(),
				"--client-cert-auth=true",
				"--trusted-ca-file=" + dpki + "/ca.crt",
				"--cert-file=" + dpki + "/" + name + ".crt",
				"--key-file=" + dpki + "/" + name + ".key",
				"--peer-client-cert-auth=true",
				"--peer-trusted-ca-file=" + dpki + "/peer-ca.crt",
				"--peer-cert-file=" + dpki + "/" + name + "-peer.crt",
				"--peer-key-file=" + dpki + "/" + name + "-peer.key",
				"--auth-token=jwt,pub-key=" + dpki + "/token.pub,priv-key=" + dpki + "/token.key,sign-method=ES256,ttl=10m",
				"--auto-compaction-mode=periodic",
				"--auto-compaction-retention=5m",
				"--quota-backend-bytes=8589934592",
				"--snapshot-count=10000",
			}, []string{dpki, ds.dataDir(i)}, "20m", false)
			pod.Labels["kubinception.dev/datastore"] = ds.name()
			pods = append(pods, staticPod{File: name + ".yaml", Pod: pod})
		}
	}
	for i := range pods {
		pods[i].Pod.Annotations[ConfigHashAnnotation] = configHash
	}
	return pods
}

// hostPod is a host-network static pod with one container running image
// with args, the given host paths mounted at the same paths.
func hostPod(c Config, digests map[string]string, name, image string, args, hostPaths []string, cpu string, privileged bool) corev1.Pod {
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	for i, hp := range hostPaths {
		vname := fmt.Sprintf("host-%d", i)
		typ := corev1.HostPathDirectoryOrCreate
		if strings.HasSuffix(hp, ".lock") {
			typ = corev1.HostPathFileOrCreate
		}
		volumes = append(volumes, corev1.Volume{Name: vname, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hp, Type: &typ}}})
		mounts = append(mounts, corev1.VolumeMount{Name: vname, MountPath: hp})
	}
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   "kube-system",
			Labels:      map[string]string{"component": name, "tier": "control-plane", "app.kubernetes.io/managed-by": "kubinception"},
			Annotations: map[string]string{ImageDigestAnnotation: digests[image]},
		},
		Spec: corev1.PodSpec{
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			Containers: []corev1.Container{{
				Name:            name,
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse(cpu),
				}},
				VolumeMounts: mounts,
			}},
			Volumes: volumes,
		},
	}
	if privileged {
		t := true
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &t}
	}
	return pod
}
