package controlplane

import (
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/tunnel"
)

// Labels and annotations the control plane's objects carry.
const (
	LabelTenant    = "kubinception.dev/tenant"
	LabelComponent = "kubinception.dev/component"
	// AnnotationPKIHash changes when a certificate or kubeconfig the pod
	// mounts changes, which rolls the Deployment.
	AnnotationPKIHash = "kubinception.dev/pki-hash"
	// PKIMountPath is where the pod sees the tenant's PKI Secret.
	PKIMountPath = "/etc/kubernetes/pki"
	// DefaultPort is the API server's port when it is not exposed on a
	// node port.
	DefaultPort = 6443
	// TunnelPort is where the tunnel server beside the API server takes
	// agents' connections; TunnelHTTPPort serves its /healthz and
	// /metrics inside the pod's network.
	TunnelPort     = 8132
	TunnelHTTPPort = 8133
	// TunnelClientPort takes the tenant's load balancers, which reach
	// node ports through the tunnel (Service TunnelClientsServiceName).
	TunnelClientPort = 8134
	// TunnelDir holds the tunnel server's socket (a volume of the pod
	// the API server reads).
	TunnelDir = "/run/kubinception/tunnel"
	// EgressMountPath is where the API server sees its egress selector
	// configuration (EgressSecretName), which sends its cluster egress to
	// the socket in TunnelDir.
	EgressMountPath = "/etc/kubernetes/egress"
	// FileEgressSelector is that configuration's key and file name.
	FileEgressSelector = "egress-selector.yaml"
)

// How an API server leaves during a rollout without failing a request. On
// SIGTERM its /readyz fails at once and the pod's endpoint turns
// terminating, so kube-proxy stops sending it new connections; for
// ShutdownDelay it still serves everything that arrives (connections
// already open, and new ones from a proxy that has not caught up); then it
// answers requests on open connections with 429, Retry-After and
// "Connection: close" (--shutdown-send-retry-after), which client-go and
// kubectl retry on a new connection, waits for in-flight requests to
// finish, and exits. The pod's grace period covers the delay and the
// longest request (--request-timeout) with a margin, so the kubelet never
// kills a request being served.
const (
	ShutdownDelay = 10 * time.Second
	// DefaultRequestTimeout is kube-apiserver's --request-timeout default.
	DefaultRequestTimeout = 60 * time.Second
	shutdownMargin        = 10 * time.Second
)

// Params is everything the control plane's objects depend on.
type Params struct {
	Name      string
	Namespace string
	Version   string
	Registry  string
	Replicas  int32
	// Port is the API server's secure port: the node port when exposed
	// as NodePort (so the address it advertises inside the tenant is
	// reachable from outside), DefaultPort otherwise.
	Port int32
	// AdvertiseAddress is the IP the API server advertises in the
	// tenant's kubernetes Service.
	AdvertiseAddress string
	ServiceCIDR      string
	PodCIDR          string
	ClusterDomain    string
	// EtcdEndpoints are the datastore gateway's URLs.
	EtcdEndpoints []string
	PKISecret     string
	PKIHash       string
	// EncryptionSecret, when set, names the Secret with the API server's
	// encryption configuration (EncryptionSecretName); EncryptionHash is
	// the hash of its data, which rolls the pods when it changes.
	EncryptionSecret string
	EncryptionHash   string
	// Tunnel runs the tunnel server beside the API server and sends the
	// API server's cluster egress through it; Image is the kubinception
	// image it runs from.
	Tunnel bool
	Image  string
	// FastStart leaves the bootstrap hooks out of the API server's
	// startup probe (fastStartPath): for a control plane that has run
	// before, whose roles and priority classes are written.
	FastStart bool
	ExtraArgs []string
	Resources corev1.ResourceRequirements
}

// Names of the objects of a tenant named name.
func DeploymentName(name string) string           { return name + "-control-plane" }
func ServiceName(name string) string              { return name + "-apiserver" }
func TunnelClientsServiceName(name string) string { return name + "-tunnel-clients" }
func PKISecretName(name string) string            { return name + "-pki" }
func EgressSecretName(name string) string         { return name + "-egress" }
func AdminKubeconfigSecret(name string) string    { return name + "-admin-kubeconfig" }

// Labels select a tenant's control-plane pods.
func Labels(name string) map[string]string {
	return map[string]string{LabelTenant: name, LabelComponent: "control-plane"}
}

// Files in the PKI Secret, as the pod sees them under PKIMountPath.
const (
	FileCA    = "ca.crt"
	FileCAKey = "ca.key"
	// FileCA is the bundle everything that verifies trusts: the current
	// CA first, then, during a CA rotation, the previous one.
	// FileCASigning is the current CA alone, for the controller manager's
	// signer, which refuses a bundle. The previous CA's pair stays in the
	// Secret while the rotation overlaps: certificates verified outside
	// the admin cluster (the API server's serving certificate, its client
	// certificate to kubelets) are issued by it until nodes and clients
	// trust the new one.
	FileCASigning     = "ca-signing.crt"
	FileCAPrevious    = "ca-previous.crt"
	FileCAPreviousKey = "ca-previous.key"
	// FileFrontProxyCAPrevious and FileSAPubPrevious are the previous
	// front-proxy CA and service-account public key during a CA
	// rotation; front-proxy-ca.crt and sa.pub then hold both.
	FileFrontProxyCAPrevious = "front-proxy-ca-previous.crt"
	FileSAPubPrevious        = "sa-previous.pub"
	FileAPIServer            = "apiserver.crt"
	FileAPIServerKey         = "apiserver.key"
	FileKubeletClient        = "apiserver-kubelet-client.crt"
	FileKubeletClientKey     = "apiserver-kubelet-client.key"
	FileFrontProxyCA         = "front-proxy-ca.crt"
	FileFrontProxyCAKey      = "front-proxy-ca.key"
	FileFrontProxyClient     = "front-proxy-client.crt"
	FileFrontProxyClientKey  = "front-proxy-client.key"
	FileSAKey                = "sa.key"
	FileSAPub                = "sa.pub"
	FileDatastoreCA          = "datastore-ca.crt"
	FileDatastoreClient      = "datastore-client.crt"
	FileDatastoreClientKey   = "datastore-client.key"
	FileTunnelAgent          = "tunnel-agent.crt"
	FileTunnelAgentKey       = "tunnel-agent.key"
	FileTunnelClient         = "tunnel-client.crt"
	FileTunnelClientKey      = "tunnel-client.key"
	FileControllerManager    = "controller-manager.conf"
	FileScheduler            = "scheduler.conf"
)

func pkiPath(file string) string { return PKIMountPath + "/" + file }

// The files of the PKI Secret each container mounts: exactly those its
// flags name (TestEachContainerMountsWhatItsFlagsName parses the flags),
// so the scheduler never sees a key, the tunnel server only the API
// server's serving pair and the CA, and only the controller manager the
// CA key it signs with.
var (
	APIServerFiles = []string{
		FileDatastoreCA, FileDatastoreClient, FileDatastoreClientKey,
		FileCA, FileAPIServer, FileAPIServerKey,
		FileKubeletClient, FileKubeletClientKey,
		FileFrontProxyCA, FileFrontProxyClient, FileFrontProxyClientKey,
		FileSAPub, FileSAKey,
	}
	ControllerManagerFiles = []string{FileControllerManager, FileCA, FileCASigning, FileCAKey, FileFrontProxyCA, FileSAKey}
	SchedulerFiles         = []string{FileScheduler}
	TunnelServerFiles      = []string{FileAPIServer, FileAPIServerKey, FileCA}
)

// Users the control plane's containers run as: never root, and a user of
// its own for the controller manager and for the scheduler. The pod
// shares one process namespace, and a process may open another's files
// through /proc/PID/root when it runs as the same user, so distinct users
// keep each one's keys its own. The tunnel server shares the API server's
// user: the API server must connect to the socket the tunnel server
// creates. Every container's group is Group, which owns the mounted
// Secret files (fsGroup) and reads them (mode 0440).
const (
	UserAPIServer         int64 = 65532
	UserControllerManager int64 = 65531
	UserScheduler         int64 = 65530
	Group                 int64 = 65532
	// secretFileMode lets the owner (root) and Group read a mounted key.
	secretFileMode int32 = 0o440
)

// APIServerSANs are the names and addresses the API server's serving
// certificate covers: the in-tenant Service names and address, the admin
// Service's names and address, the advertised address, the host name and
// extra SANs, and loopback for the other components in the pod.
func APIServerSANs(p Params, serviceIP string, hostname string, extra []string) pki.Spec {
	dns := map[string]bool{
		"kubernetes": true, "kubernetes.default": true, "kubernetes.default.svc": true,
		"kubernetes.default.svc." + p.ClusterDomain: true, "localhost": true,
		ServiceName(p.Name): true, ServiceName(p.Name) + "." + p.Namespace: true,
		ServiceName(p.Name) + "." + p.Namespace + ".svc": true,
	}
	ips := map[string]bool{"127.0.0.1": true}
	if ip := FirstServiceIP(p.ServiceCIDR); ip != "" {
		ips[ip] = true
	}
	for _, v := range append([]string{serviceIP, p.AdvertiseAddress, hostname}, extra...) {
		switch {
		case v == "":
		case net.ParseIP(v) != nil:
			ips[v] = true
		default:
			dns[v] = true
		}
	}
	spec := pki.Spec{CommonName: "kube-apiserver", Server: true}
	for d := range dns {
		spec.DNSNames = append(spec.DNSNames, d)
	}
	for ip := range ips {
		spec.IPs = append(spec.IPs, net.ParseIP(ip))
	}
	sort.Strings(spec.DNSNames)
	sort.Slice(spec.IPs, func(i, j int) bool { return spec.IPs[i].String() < spec.IPs[j].String() })
	return spec
}

// FirstServiceIP is the first address of a Service range: the tenant's
// kubernetes Service.
func FirstServiceIP(cidr string) string {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil || n.IP.To4() == nil {
		return ""
	}
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3]++
	return ip.String()
}

// Images names the images of the tenant's components: its Kubernetes
// version and the CoreDNS release, from its registry.
func (p Params) Images() release.Names {
	return release.Names{Registry: p.Registry, KubernetesVersion: p.Version, EtcdVersion: release.EtcdVersion, CoreDNSVersion: release.CoreDNSVersion}
}

// EtcdServers are the datastore endpoints (--etcd-servers) of a
// control-plane pod's API server, nil when it has none.
func EtcdServers(spec *corev1.PodSpec) []string {
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
				return strings.Split(v, ",")
			}
		}
	}
	return nil
}

// APIServerArgs are kube-apiserver's flags. The API server reaches its
// datastore only through the datastore's gateway, which confines it to its
// own keys (so it keeps the default --etcd-prefix) and turns its
// compactions into compactions of its own view of the history.
func APIServerArgs(p Params) []string {
	args := []string{
		"--advertise-address=" + p.AdvertiseAddress,
		"--secure-port=" + strconv.Itoa(int(p.Port)),
		// The operator writes the kubernetes Service's endpoint, the same
		// for every replica (tenantbootstrap.Objects).
		"--endpoint-reconciler-type=none",
		// No identity Lease: it is renewed every 10 seconds (an idle
		// tenant's other datastore writes) and serves only alpha
		// features (storage versions, peer proxy) a tenant does not run.
		"--feature-gates=APIServerIdentity=false",
		"--etcd-servers=" + strings.Join(p.EtcdEndpoints, ","),
		"--etcd-cafile=" + pkiPath(FileDatastoreCA),
		"--etcd-certfile=" + pkiPath(FileDatastoreClient),
		"--etcd-keyfile=" + pkiPath(FileDatastoreClientKey),
		"--client-ca-file=" + pkiPath(FileCA),
		"--tls-cert-file=" + pkiPath(FileAPIServer),
		"--tls-private-key-file=" + pkiPath(FileAPIServerKey),
		"--kubelet-client-certificate=" + pkiPath(FileKubeletClient),
		"--kubelet-client-key=" + pkiPath(FileKubeletClientKey),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		// Kubelet serving certificates are issued by the tenant CA once
		// the operator has checked the names they claim.
		"--kubelet-certificate-authority=" + pkiPath(FileCA),
		"--proxy-client-cert-file=" + pkiPath(FileFrontProxyClient),
		"--proxy-client-key-file=" + pkiPath(FileFrontProxyClientKey),
		"--requestheader-client-ca-file=" + pkiPath(FileFrontProxyCA),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--service-account-issuer=https://kubernetes.default.svc." + p.ClusterDomain,
		"--service-account-key-file=" + pkiPath(FileSAPub),
		"--service-account-signing-key-file=" + pkiPath(FileSAKey),
		"--service-cluster-ip-range=" + p.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--allow-privileged=true",
		"--profiling=false",
		"--shutdown-delay-duration=" + ShutdownDelay.String(),
		"--shutdown-send-retry-after=true",
	}
	if p.Tunnel {
		args = append(args, "--egress-selector-config-file="+EgressMountPath+"/"+FileEgressSelector)
	}
	if p.EncryptionSecret != "" {
		args = append(args, "--encryption-provider-config="+encryptionConfigPath())
	}
	return mergeArgs(args, p.ExtraArgs)
}

// TunnelServerArgs are the tunnel server's flags: it serves agents with
// the API server's own certificate (the names and addresses agents dial)
// and accepts agent certificates of the tenant CA.
func TunnelServerArgs(p Params) []string {
	return []string{
		"tunnel", "server",
		"--server-count=" + strconv.Itoa(int(p.Replicas)),
		"--agent-address=:" + strconv.Itoa(TunnelPort),
		"--http-address=:" + strconv.Itoa(TunnelHTTPPort),
		"--client-address=:" + strconv.Itoa(TunnelClientPort),
		"--socket=" + tunnelSocket,
		"--tls-cert-file=" + pkiPath(FileAPIServer),
		"--tls-key-file=" + pkiPath(FileAPIServerKey),
		"--agent-ca-file=" + pkiPath(FileCA),
	}
}

// tunnelSocket is where the tunnel server listens for the API server.
const tunnelSocket = TunnelDir + "/tunnel.sock"

// EgressSecret renders the Secret with the API server's egress selector
// configuration (cluster egress to the tunnel server's socket). The
// operator writes it, not the tunnel server, so the API server need not
// wait for the tunnel to start: it dials the socket on its first egress,
// not at start. A Secret, not a ConfigMap: the operator's Role allows it
// ConfigMaps only in the front door's namespace.
func EgressSecret(p Params) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: EgressSecretName(p.Name), Namespace: p.Namespace, Labels: map[string]string{LabelTenant: p.Name}},
		Data:       map[string][]byte{FileEgressSelector: tunnel.EgressSelectorConfiguration(tunnelSocket)},
	}
}

// mergeArgs lets extra "--flag=value" arguments replace defaults of the
// same flag, so a customer can override without duplicating a flag.
func mergeArgs(base, extra []string) []string {
	flagName := func(a string) string { return strings.SplitN(a, "=", 2)[0] }
	override := map[string]bool{}
	for _, e := range extra {
		override[flagName(e)] = true
	}
	var out []string
	for _, b := range base {
		if !override[flagName(b)] {
			out = append(out, b)
		}
	}
	return append(out, extra...)
}

// TerminationGracePeriod is how long the kubelet lets a control-plane
// pod stop: the API server's shutdown delay, then its longest request
// (--request-timeout, which extraArgs may raise), then a margin.
func TerminationGracePeriod(p Params) time.Duration {
	timeout := DefaultRequestTimeout
	for _, a := range p.ExtraArgs {
		if v, ok := strings.CutPrefix(a, "--request-timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				timeout = d
			}
		}
	}
	return ShutdownDelay + timeout + shutdownMargin
}

// ControllerManagerArgs are kube-controller-manager's flags.
func ControllerManagerArgs(p Params) []string {
	return []string{
		"--kubeconfig=" + pkiPath(FileControllerManager),
		"--authentication-kubeconfig=" + pkiPath(FileControllerManager),
		"--authorization-kubeconfig=" + pkiPath(FileControllerManager),
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + pkiPath(FileCA),
		"--requestheader-client-ca-file=" + pkiPath(FileFrontProxyCA),
		"--cluster-signing-cert-file=" + pkiPath(FileCASigning),
		"--cluster-signing-key-file=" + pkiPath(FileCAKey),
		"--root-ca-file=" + pkiPath(FileCA),
		"--service-account-private-key-file=" + pkiPath(FileSAKey),
		"--service-cluster-ip-range=" + p.ServiceCIDR,
		"--cluster-cidr=" + p.PodCIDR,
		"--allocate-node-cidrs=true",
		"--node-cidr-mask-size=24",
		"--use-service-account-credentials=true",
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--leader-elect=" + strconv.FormatBool(p.Replicas > 1),
		"--profiling=false",
	}
}

// SchedulerArgs are kube-scheduler's flags.
func SchedulerArgs(p Params) []string {
	return []string{
		"--kubeconfig=" + pkiPath(FileScheduler),
		"--authentication-kubeconfig=" + pkiPath(FileScheduler),
		"--authorization-kubeconfig=" + pkiPath(FileScheduler),
		"--bind-address=127.0.0.1",
		"--leader-elect=" + strconv.FormatBool(p.Replicas > 1),
		"--profiling=false",
	}
}

// fastStartPath is the API server's startup probe (its readiness check)
// for a control plane that has run before (Params.FastStart): /readyz
// less the two start-up hooks that write the default RBAC roles and
// priority classes. Every start after the first finds them written, yet
// each hook takes a second or more (the priority classes' first check
// waits a second), and the API server serves correctly while they run.
// A first start waits for them: the controller manager, started once the
// probe passes, gives up when /healthz (which counts the hooks) is not ok
// within 10 seconds, and writing the roles for the first time on a busy
// node takes longer than that.
const fastStartPath = "/readyz?exclude=poststarthook/rbac/bootstrap-roles&exclude=poststarthook/scheduling/bootstrap-system-priority-classes"

// FastStarting says whether a rendered control-plane Deployment has the
// FastStart probe.
func FastStarting(dep *appsv1.Deployment) bool {
	for _, c := range dep.Spec.Template.Spec.InitContainers {
		if c.Name == "kube-apiserver" && c.StartupProbe != nil && c.StartupProbe.HTTPGet != nil {
			return c.StartupProbe.HTTPGet.Path == fastStartPath
		}
	}
	return false
}

// Deployment renders the control-plane Deployment. It rolls one pod at a
// time and never takes one away before its replacement is ready, so a
// version upgrade never leaves the tenant without a ready API server. The
// three components of a pod run the same version from the same release,
// and the controller manager and scheduler reach only their own pod's API
// server (their kubeconfigs name 127.0.0.1), which the kubelet starts
// first (a sidecar): neither ever talks to an older API server than
// itself, whatever mix of versions a rollout has running.
func Deployment(p Params) *appsv1.Deployment {
	labels := Labels(p.Name)
	maxUnavailable := intstr.FromInt32(0)
	maxSurge := intstr.FromInt32(1)
	port := intstr.FromInt32(p.Port)
	apiserverResources := p.Resources
	if apiserverResources.Requests == nil {
		apiserverResources.Requests = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("25m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		}
	}
	small := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("5m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}}
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port, Scheme: corev1.URISchemeHTTPS}},
			PeriodSeconds:    2,
			TimeoutSeconds:   5,
			FailureThreshold: failures,
		}
	}
	liveness := probe("/livez", 8)
	liveness.InitialDelaySeconds = 10
	liveness.PeriodSeconds = 10
	// Many API servers starting at once on a small admin node can take
	// minutes; the startup probe must not kill them for being slow, or they
	// restart in a loop and never catch up. It asks /readyz (with
	// FastStart, fastStartPath) every second, and is the API server's only
	// readiness check: once it passes the container is ready. There is no readiness probe: the
	// kubelet's first readiness run after the startup probe passes races
	// with the container's started state and is usually skipped, so with
	// one every start and wake waited for its next tick (up to 10 s at a
	// 10-second period, bench/results/tenants.md), and each probe is a new
	// TLS connection the API server pays for while the tenant is idle. A
	// pod leaving still leaves its Service at once (its endpoint turns
	// terminating on deletion), and an API server that stops serving is
	// restarted by the liveness probe.
	startup := probe("/readyz", 600)
	if p.FastStart {
		startup = probe(fastStartPath, 600)
	}
	startup.PeriodSeconds = 1
	replicas := p.Replicas
	grace := int64(TerminationGracePeriod(p).Seconds())
	secretMode := secretFileMode
	// Each container mounts its own view of the PKI Secret (the files its
	// flags name) and a scratch /tmp of its own: root filesystems are
	// read-only.
	volumes := []corev1.Volume{
		pkiVolume("pki", p.PKISecret, APIServerFiles),
		pkiVolume("pki-controller-manager", p.PKISecret, ControllerManagerFiles),
		pkiVolume("pki-scheduler", p.PKISecret, SchedulerFiles),
		tmpVolume("tmp-apiserver"), tmpVolume("tmp-controller-manager"), tmpVolume("tmp-scheduler"),
	}
	apiserverMounts := []corev1.VolumeMount{
		{Name: "pki", MountPath: PKIMountPath, ReadOnly: true},
		{Name: "tmp-apiserver", MountPath: "/tmp"},
	}
	if p.Tunnel {
		volumes = append(volumes,
			corev1.Volume{Name: "tunnel", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			pkiVolume("pki-tunnel", p.PKISecret, TunnelServerFiles))
		apiserverMounts = append(apiserverMounts,
			corev1.VolumeMount{Name: "tunnel", MountPath: TunnelDir, ReadOnly: true},
			corev1.VolumeMount{Name: "egress", MountPath: EgressMountPath, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "egress", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: EgressSecretName(p.Name), DefaultMode: &secretMode},
		}})
	}
	annotations := map[string]string{AnnotationPKIHash: p.PKIHash}
	if p.EncryptionSecret != "" {
		// The encryption keys: the API server's alone, no other
		// container mounts them.
		volumes = append(volumes, corev1.Volume{Name: "encryption", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: p.EncryptionSecret, DefaultMode: &secretMode},
		}})
		apiserverMounts = append(apiserverMounts, corev1.VolumeMount{Name: "encryption", MountPath: EncryptionMountPath, ReadOnly: true})
		annotations[AnnotationEncryptionHash] = p.EncryptionHash
	}
	always := corev1.ContainerRestartPolicyAlways
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: DeploymentName(p.Name), Namespace: p.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					// kube-controller-manager installs no SIGTERM handler; as
					// PID 1 of its container it would ignore SIGTERM and hold
					// every deletion for the whole grace period. With a shared
					// process namespace the sandbox is PID 1 instead.
					ShareProcessNamespace:         ptrTrue(),
					TerminationGracePeriodSeconds: &grace,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptrTrue(),
						RunAsUser:      ptr(UserAPIServer),
						RunAsGroup:     ptr(Group),
						FSGroup:        ptr(Group),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					AutomountServiceAccountToken: new(bool),
					EnableServiceLinks:           new(bool),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
								TopologyKey:   "kubernetes.io/hostname",
							},
						}},
					}},
					// The API server is a sidecar (an init container that keeps
					// running): the kubelet starts the controller manager and
					// the scheduler only once its startup probe passes, so they
					// never crash-loop, and back off, waiting for it, which on
					// a busy admin node delays a tenant by minutes. It is the
					// only one: nothing it needs at start comes from another
					// container (the tunnel's egress configuration is the
					// operator's Secret), so it starts as soon as the pod's
					// sandbox is up.
					InitContainers: []corev1.Container{{
						Name:            "kube-apiserver",
						Image:           p.Images().Component("kube-apiserver"),
						ImagePullPolicy: corev1.PullIfNotPresent,
						RestartPolicy:   &always,
						Args:            APIServerArgs(p),
						Ports:           []corev1.ContainerPort{{Name: "https", ContainerPort: p.Port, Protocol: corev1.ProtocolTCP}},
						LivenessProbe:   liveness,
						StartupProbe:    startup,
						Resources:       apiserverResources,
						VolumeMounts:    apiserverMounts,
						SecurityContext: restricted(UserAPIServer),
					}},
					Containers: append(tunnelServer(p, small),
						corev1.Container{
							Name:            "kube-controller-manager",
							Image:           p.Images().Component("kube-controller-manager"),
							ImagePullPolicy: corev1.PullIfNotPresent,
							Args:            ControllerManagerArgs(p),
							Resources:       small,
							VolumeMounts: []corev1.VolumeMount{
								{Name: "pki-controller-manager", MountPath: PKIMountPath, ReadOnly: true},
								{Name: "tmp-controller-manager", MountPath: "/tmp"},
							},
							SecurityContext: restricted(UserControllerManager),
						},
						corev1.Container{
							Name:            "kube-scheduler",
							Image:           p.Images().Component("kube-scheduler"),
							ImagePullPolicy: corev1.PullIfNotPresent,
							Args:            SchedulerArgs(p),
							Resources:       small,
							VolumeMounts: []corev1.VolumeMount{
								{Name: "pki-scheduler", MountPath: PKIMountPath, ReadOnly: true},
								{Name: "tmp-scheduler", MountPath: "/tmp"},
							},
							SecurityContext: restricted(UserScheduler),
						},
					),
					Volumes: volumes,
				},
			},
		},
	}
}

func ptrTrue() *bool { t := true; return &t }

func ptr[T any](v T) *T { return &v }

// restricted is a container's security context: a user of its own (see
// UserAPIServer), no capabilities (every port is above 1024: node ports,
// 6443, 8132-8134), no privilege escalation, the runtime's default seccomp
// profile and a read-only root filesystem.
func restricted(user int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptrTrue(),
		RunAsUser:                ptr(user),
		RunAsGroup:               ptr(Group),
		AllowPrivilegeEscalation: new(bool),
		ReadOnlyRootFilesystem:   ptrTrue(),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// pkiVolume is a view of the PKI Secret with only files, each at its own
// name, readable by Group.
func pkiVolume(name, secret string, files []string) corev1.Volume {
	mode := secretFileMode
	items := make([]corev1.KeyToPath, 0, len(files))
	for _, f := range files {
		items = append(items, corev1.KeyToPath{Key: f, Path: f})
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, Items: items, DefaultMode: &mode},
	}}
}

// tmpVolume is a container's scratch directory, small, on the node's disk.
func tmpVolume(name string) corev1.Volume {
	limit := resource.MustParse("64Mi")
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}}}
}

// tunnelServer is the tunnel server's container when the tunnel is on. It
// starts with the controller manager and the scheduler, once the API
// server has: agents and the API server's egress reach it when it
// listens, and until then an agent retries and an egress request fails
// as if the node were unreachable. It has no probe, so the pod's
// readiness (which the Service and so the front door wait for) waits
// only for it to run.
func tunnelServer(p Params, resources corev1.ResourceRequirements) []corev1.Container {
	if !p.Tunnel {
		return nil
	}
	return []corev1.Container{{
		Name:            "tunnel",
		Image:           p.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            TunnelServerArgs(p),
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
		}}},
		Ports: []corev1.ContainerPort{
			{Name: "tunnel", ContainerPort: TunnelPort, Protocol: corev1.ProtocolTCP},
			{Name: "tunnel-http", ContainerPort: TunnelHTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: "tunnel-clients", ContainerPort: TunnelClientPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:       resources,
		SecurityContext: restricted(UserAPIServer),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "pki-tunnel", MountPath: PKIMountPath, ReadOnly: true},
			{Name: "tunnel", MountPath: TunnelDir},
		},
	}}
}

// ServicePorts are the ports of the Service in front of the control
// plane. APIServerTarget is the API server's secure port; the node ports,
// when not zero, keep allocated node ports; the tunnel port is there
// only with Tunnel.
type ServicePorts struct {
	APIServerTarget   int32
	APIServerNodePort int32
	Tunnel            bool
	TunnelNodePort    int32
}

// Service renders the Service in front of the API server (port "https",
// what clients inside the admin cluster use) and the tunnel server (port
// "tunnel", where agents connect).
func Service(name, namespace string, typ corev1.ServiceType, ports ServicePorts) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: ServiceName(name), Namespace: namespace, Labels: Labels(name)},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: Labels(name),
			Ports: []corev1.ServicePort{{
				Name:       "https",
				Protocol:   corev1.ProtocolTCP,
				Port:       DefaultPort,
				TargetPort: intstr.FromInt32(ports.APIServerTarget),
				NodePort:   ports.APIServerNodePort,
			}},
		},
	}
	if ports.Tunnel {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name:       "tunnel",
			Protocol:   corev1.ProtocolTCP,
			Port:       TunnelPort,
			TargetPort: intstr.FromInt32(TunnelPort),
			NodePort:   ports.TunnelNodePort,
		})
	}
	return svc
}

// TunnelClientsService renders the Service in front of the tunnel
// servers' client port: inside the admin cluster only, for the tenant's
// load balancers.
func TunnelClientsService(name, namespace string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: TunnelClientsServiceName(name), Namespace: namespace, Labels: Labels(name)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: Labels(name),
			Ports: []corev1.ServicePort{{
				Name: "tunnel-clients", Protocol: corev1.ProtocolTCP,
				Port: TunnelClientPort, TargetPort: intstr.FromInt32(TunnelClientPort),
			}},
		},
	}
}
