package admincluster

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"kubinception.dev/kubinception/internal/local/nodeconfig"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// renderContainerdConfig is containerd's configuration: its own root, state
// and socket, so it never meets a containerd the machine may already run.
func renderContainerdConfig(c Config) string {
	p := c.paths()
	return nodeconfig.Containerd{
		Root: p.ContainerdRoot(), State: p.ContainerdState(), Socket: p.ContainerdSocket(), Opt: p.join("containerd", "opt"),
		RuncRoot: p.RuncRoot(), SandboxImage: c.Images.Pause(), CNIConfDir: p.CNIConf(),
	}.Render()
}

// renderCNIConfig is the pod network: a bridge with host-local addresses
// from the pod range, masquerading traffic that leaves it.
func renderCNIConfig(c Config) string {
	gw := firstHost(c.PodCIDR)
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kubinception",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      BridgeInterface,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": c.paths().CNIState(),
					"ranges":  [][]map[string]string{{{"subnet": c.PodCIDR.String(), "gateway": gw.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	out, _ := json.MarshalIndent(conf, "", "  ")
	return string(out) + "\n"
}

// renderKubeletConfig is the kubelet's configuration file: the machine's
// settings every kubelet of ours has, then the admin node's own.
func renderKubeletConfig(c Config) string {
	p := c.paths()
	return nodeconfig.Kubelet{RuntimeEndpoint: p.ContainerdSocket()}.Render(fmt.Sprintf(`staticPodPath: %s
fileCheckFrequency: 5s
podLogsDir: %s
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
clusterDomain: %s
%stlsCertFile: %s
tlsPrivateKeyFile: %s
rotateCertificates: false
serializeImagePulls: false
`, p.Manifests(), p.PodLogs(), c.NodeIP, c.Ports.Kubelet, c.Ports.KubeletHealthz,
		c.ClusterDomain, tenantbootstrap.KubeletAccess(p.join("pki", "ca.crt")), p.join("pki", "kubelet.crt"), p.join("pki", "kubelet.key")))
}

// kubeletArgs are the kubelet's command-line flags.
func kubeletArgs(c Config) []string {
	p := c.paths()
	return []string{
		"--config=" + p.join("config", "kubelet.yaml"),
		"--kubeconfig=" + p.Kubeconfig("kubelet"),
		"--root-dir=" + p.KubeletRoot(),
		"--hostname-override=" + c.NodeName,
		"--node-ip=" + c.NodeIP.String(),
	}
}

// containerdArgs are containerd's command-line flags.
func containerdArgs(c Config) []string {
	return []string{"--config", c.paths().join("config", "containerd.toml")}
}

// renderProxyConfig is kube-proxy's configuration. Conntrack limits are
// left as the machine has them: kube-proxy may not write them here.
func renderProxyConfig(c Config) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: %s
metricsBindAddress: 127.0.0.1:%d
healthzBindAddress: 127.0.0.1:%d
clientConnection:
  kubeconfig: /etc/kube-proxy/kube-proxy.conf
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.PodCIDR, c.NodeName, c.NodeIP, c.Ports.ProxyMetrics, c.Ports.ProxyHealthz)
}

// apiServerURL is the admin API server's address as clients use it.
func apiServerURL(c Config) string {
	return "https://" + net.JoinHostPort(c.NodeIP.String(), strconv.Itoa(c.Ports.APIServer))
}

// datastoreEndpoints are the datastore's client URLs.
func datastoreEndpoints(c Config) []string {
	var eps []string
	for i := 0; i < DatastoreMembers; i++ {
		eps = append(eps, "https://"+net.JoinHostPort(c.NodeIP.String(), strconv.Itoa(c.Ports.DatastoreClient+i)))
	}
	return eps
}

// datastoreInitialCluster is etcd's --initial-cluster for the datastore.
func datastoreInitialCluster(c Config) string {
	var parts []string
	for i := 0; i < DatastoreMembers; i++ {
		parts = append(parts, fmt.Sprintf("datastore-%d=https://%s", i, net.JoinHostPort(c.NodeIP.String(), strconv.Itoa(c.Ports.DatastorePeer+i))))
	}
	return strings.Join(parts, ",")
}

// firstHost is the first address of a network, used as its gateway.
func firstHost(n *net.IPNet) net.IP {
	ip := make(net.IP, len(n.IP.To4()))
	copy(ip, n.IP.To4())
	ip[len(ip)-1]++
	return ip
}

// nthHost is the n-th address of a network: the first service address is
// the kubernetes Service's.
func nthHost(n *net.IPNet, i int) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	v += uint32(i)
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}
