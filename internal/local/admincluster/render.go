package admincluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/nodeconfig"
	"kubinception.dev/kubinception/internal/local/supervisor"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// renderContainerdConfig is containerd's configuration: its own root, state,
// socket and CNI plugins, so it never meets a containerd the machine may
// already run.
func renderContainerdConfig(c Config) string {
	p := c.paths()
	return nodeconfig.Containerd{
		Root: p.ContainerdRoot(), State: p.ContainerdState(), Socket: p.ContainerdSocket(), Opt: p.join("containerd", "opt"),
		RuncRoot: p.RuncRoot(), SandboxImage: c.Images.Pause(), CNIConfDir: p.CNIConf(), CNIBinDir: p.CNIBin(),
	}.Render()
}

// renderCNIConfig is the pod network: Calico's CNI plugin in policy-only
// form. Each pod gets an address of the pod range from host-local IPAM and
// a routed /32 on a host interface of its own (cali...), where Felix
// enforces NetworkPolicy; Felix also masquerades traffic leaving the pod
// range (the IPPool's natOutgoing). portmap serves hostPorts.
func renderCNIConfig(c Config) (string, error) {
	p := c.paths()
	conf, err := calico.CNI{
		NodeName:   c.NodeName,
		Subnet:     c.PodCIDR.String(),
		DataDir:    p.CNIState(),
		Kubeconfig: p.Kubeconfig(cniKubeconfig),
		LogFile:    filepath.Join(p.Logs(), "calico-cni.log"),
	}.Config()
	if err != nil {
		return "", err
	}
	return conf + "\n", nil
}

// felixProcess is Felix as the supervisor runs it: after containerd and
// the kubelet, as a host process, with its settings in its environment
// (Felix reads KUBECONFIG only from there) and an empty configuration
// file.
func felixProcess(c Config) supervisor.Process {
	return supervisor.Process{
		Name: FelixProcess,
		Path: filepath.Join(filepath.Dir(c.Binaries.Calico), "calico-felix"),
		Args: []string{"-c", "/dev/null"},
		Env:  append(calico.Felix{NodeName: c.NodeName}.EnvList(), "KUBECONFIG="+c.paths().Kubeconfig(felixKubeconfig)),
	}
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
// left as the machine has them: kube-proxy may not write them here. The
// rules follow an endpoint change within 100ms rather than kube-proxy's
// default second: a waking tenant's first request waits on its API
// server's address reaching the rules, and one node with few Services
// syncs them in milliseconds.
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
iptables:
  minSyncPeriod: 100ms
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

// datastoreEndpoints are the default datastore's client URLs.
func datastoreEndpoints(c Config) []string { return localDatastore{c: c}.endpoints() }

// nthHost is the n-th address of a network: the first service address is
// the kubernetes Service's.
func nthHost(n *net.IPNet, i int) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	v += uint32(i)
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}
