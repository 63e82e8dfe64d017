package admincluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/release"
)

// Names of host objects the admin cluster creates. Every one carries the
// "kubi" prefix so teardown and leftover checks can tell ours apart.
const (
	// NodeInterface is a port-less bridge holding the node address, so the
	// cluster never borrows an address of the machine's own networks. (A
	// bridge rather than a dummy interface: kernels without the dummy
	// driver, such as this VM's, all have bridges.)
	NodeInterface = "kubi0"
	// legacyBridgeInterface is the bridge earlier versions put the pods
	// on; teardown and the leftover check still look for it.
	legacyBridgeInterface = "kubi-cni0"
	// DatastoreMembers is the size of the shared etcd cluster.
	DatastoreMembers = 3
	// SystemNamespace is where kubinception keeps its objects in the
	// admin cluster.
	SystemNamespace = "kubinception-system"
	// DatastoreRootSecret holds the datastore's CA, the root client
	// certificate and the root password, for the operator.
	DatastoreRootSecret = "datastore-default-root"
	// DatastoreCASecret holds the datastore's CA certificate and key, with
	// which the operator issues each tenant's etcd client certificate.
	DatastoreCASecret = "datastore-default-ca"
)

// Ports the admin cluster listens on.
type Ports struct {
	APIServer         int
	Etcd              int // admin etcd client port; peer is +1, metrics +2
	Kubelet           int
	KubeletHealthz    int
	ControllerManager int
	Scheduler         int
	ProxyMetrics      int
	ProxyHealthz      int
	// DatastoreClient and DatastorePeer are the first member's ports;
	// member i uses the port plus i.
	DatastoreClient int
	DatastorePeer   int
}

// DefaultPorts are the ports used unless configured otherwise.
var DefaultPorts = Ports{
	APIServer: 6443, Etcd: 2379, Kubelet: 10250, KubeletHealthz: 10248,
	ControllerManager: 10257, Scheduler: 10259, ProxyMetrics: 10249, ProxyHealthz: 10256,
	DatastoreClient: 23790, DatastorePeer: 23800,
}

// All lists every port with what uses it, for the pre-flight check
// (the first datastore's; datastorePorts adds the others').
func (p Ports) All() map[int]string {
	m := map[int]string{
		p.APIServer: "kube-apiserver", p.Etcd: "etcd (client)", p.Etcd + 1: "etcd (peer)", p.Etcd + 2: "etcd (metrics)",
		p.Kubelet: "kubelet", p.KubeletHealthz: "kubelet (healthz)", p.ControllerManager: "kube-controller-manager",
		p.Scheduler: "kube-scheduler", p.ProxyMetrics: "kube-proxy (metrics)", p.ProxyHealthz: "kube-proxy (healthz)",
		calico.HealthPort: "calico-felix (health)", calico.MetricsPort: "calico-felix (metrics)",
	}
	for i := 0; i < DatastoreMembers; i++ {
		m[p.DatastoreClient+i] = fmt.Sprintf("datastore-%d (client)", i)
		m[p.DatastorePeer+i] = fmt.Sprintf("datastore-%d (peer)", i)
	}
	return m
}

// Config is everything that shapes the admin cluster.
type Config struct {
	// Root holds all state: PKI, data, configuration, logs.
	Root        string
	NodeName    string
	NodeIP      net.IP
	PodCIDR     *net.IPNet
	ServiceCIDR *net.IPNet
	// LoadBalancerCIDR is where the operator takes the addresses of the
	// admin cluster's Services of type LoadBalancer (the tenants' load
	// balancers): routed to the admin node itself, where kube-proxy
	// serves them.
	LoadBalancerCIDR  *net.IPNet
	ClusterDomain     string
	KubernetesVersion string
	Ports             Ports
	Images            release.Names
	Binaries          components.Binaries
	// OtherVersions are further cached Kubernetes builds: their
	// control-plane images are imported too, for tenants.
	OtherVersions []components.Binaries
	// Self is the kubinception binary, run as the supervisor and packed
	// as the kubinception image.
	Self string
	// Datastores is how many datastores run (1 when 0): the first is
	// "default", the others "datastore-2", ... (admin up --datastores).
	Datastores int
}

// DefaultRoot is where the admin cluster keeps its state.
const DefaultRoot = "/var/lib/kubinception"

// Defaults returns a Config with every default filled in except the
// binaries, which come from a build.
func Defaults() Config {
	_, pods, _ := net.ParseCIDR("10.200.0.0/16")
	_, services, _ := net.ParseCIDR("10.201.0.0/16")
	_, lbs, _ := net.ParseCIDR("10.199.128.0/20")
	return Config{
		LoadBalancerCIDR:  lbs,
		Root:              DefaultRoot,
		NodeName:          "kubinception-admin",
		NodeIP:            net.ParseIP("10.199.0.1").To4(),
		PodCIDR:           pods,
		ServiceCIDR:       services,
		ClusterDomain:     "cluster.local",
		KubernetesVersion: release.DefaultKubernetesVersion,
		Ports:             DefaultPorts,
		Images: release.Names{
			Registry:          release.LocalRegistry,
			KubernetesVersion: release.DefaultKubernetesVersion,
			EtcdVersion:       release.EtcdVersion,
			CoreDNSVersion:    release.CoreDNSVersion,
			KubinceptionTag:   "dev",
		},
	}
}

// Validate checks the configuration and names the setting to fix.
func (c Config) Validate() error {
	switch {
	case c.Root == "" || !filepath.IsAbs(c.Root):
		return fmt.Errorf("--root %q must be an absolute path", c.Root)
	case c.NodeIP == nil || c.NodeIP.To4() == nil:
		return fmt.Errorf("--node-ip must be an IPv4 address")
	case c.PodCIDR == nil || c.ServiceCIDR == nil:
		return fmt.Errorf("--pod-cidr and --service-cidr must be CIDRs such as 10.200.0.0/16")
	case c.PodCIDR.Contains(c.ServiceCIDR.IP) || c.ServiceCIDR.Contains(c.PodCIDR.IP):
		return fmt.Errorf("--pod-cidr %s and --service-cidr %s overlap: choose ranges that do not", c.PodCIDR, c.ServiceCIDR)
	case c.PodCIDR.Contains(c.NodeIP) || c.ServiceCIDR.Contains(c.NodeIP):
		return fmt.Errorf("--node-ip %s lies inside the pod or service range: choose an address outside both", c.NodeIP)
	case c.LoadBalancerCIDR == nil:
		return fmt.Errorf("--load-balancer-cidr must be a CIDR such as 10.199.128.0/20")
	case overlap(c.LoadBalancerCIDR, c.PodCIDR) || overlap(c.LoadBalancerCIDR, c.ServiceCIDR) || c.LoadBalancerCIDR.Contains(c.NodeIP):
		return fmt.Errorf("--load-balancer-cidr %s overlaps the pod or service range or holds the node address: choose a range apart from them", c.LoadBalancerCIDR)
	}
	if c.Datastores < 0 || c.Datastores > MaxDatastores {
		return fmt.Errorf("--datastores %d: run 1 to %d datastores", c.Datastores, MaxDatastores)
	}
	if err := release.ValidateKubernetesVersion(c.KubernetesVersion); err != nil {
		return err
	}
	return c.Images.Validate()
}

// LayerDir is where image layers are cached.
func (c Config) LayerDir() string { return filepath.Join(c.paths().Images(), "layers") }

// ImagesDir holds temporary image archives.
func (c Config) ImagesDir() string { return c.paths().Images() }

// paths are the files and directories under Root.
type paths struct{ root string }

func (c Config) paths() paths { return paths{root: c.Root} }

// DatastorePKIDir holds the datastore's CAs and certificates: each
// member's serving (datastore-N) and peer (datastore-N-peer) certificate
// and the root client certificate.
func (c Config) DatastorePKIDir() string { return c.paths().DatastorePKI() }

// DatastorePeerEndpoints are the members' peer URLs.
func (c Config) DatastorePeerEndpoints() []string {
	out := make([]string, DatastoreMembers)
	for i := range out {
		out[i] = "https://" + net.JoinHostPort(c.NodeIP.String(), strconv.Itoa(c.Ports.DatastorePeer+i))
	}
	return out
}

func (p paths) join(elem ...string) string {
	return filepath.Join(append([]string{p.root}, elem...)...)
}
func (p paths) PKI() string                { return p.join("pki") }
func (p paths) DatastorePKI() string       { return p.join("pki", "datastore") }
func (p paths) Manifests() string          { return p.join("manifests") }
func (p paths) Config() string             { return p.join("config") }
func (p paths) Logs() string               { return p.join("logs") }
func (p paths) Run() string                { return p.join("run") }
func (p paths) ContainerdSocket() string   { return p.join("run", "containerd.sock") }
func (p paths) ContainerdRoot() string     { return p.join("containerd", "root") }
func (p paths) ContainerdState() string    { return p.join("containerd", "state") }
func (p paths) RuncRoot() string           { return p.join("containerd", "runc") }
func (p paths) KubeletRoot() string        { return p.join("kubelet") }
func (p paths) PodLogs() string            { return p.join("pod-logs") }
func (p paths) CNIConf() string            { return p.join("cni", "net.d") }
func (p paths) CNIState() string           { return p.join("cni", "state") }
func (p paths) CNIBin() string             { return p.join("cni", "bin") }
func (p paths) EtcdData() string           { return p.join("data", "etcd") }
func (p paths) DatastoreData(i int) string { return p.join("data", fmt.Sprintf("datastore-%d", i)) }
func (p paths) State() string              { return p.join("state") }
func (p paths) Images() string             { return p.join("images") }
func (p paths) AdminKubeconfig() string    { return p.join("admin.conf") }
func (p paths) Kubeconfig(name string) string {
	return p.join("config", name+".conf")
}

func overlap(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }
