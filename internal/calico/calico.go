package calico

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Names of the identities Felix and the CNI plugin use.
const (
	// FelixName names Felix's ServiceAccount, ClusterRole and binding (as
	// upstream's calico-node).
	FelixName = "calico-node"
	// CNIName names the CNI plugin's ServiceAccount, ClusterRole and binding.
	CNIName = "calico-cni-plugin"
	// NetworkName is the CNI network's name; host-local IPAM keeps its
	// allocations under it.
	NetworkName = "k8s-pod-network"
	// InterfacePrefix starts every host-side pod interface Felix polices.
	InterfacePrefix = "cali"
	// HealthPort and MetricsPort are Felix's loopback health (/readiness,
	// /liveness) and Prometheus ports.
	HealthPort  = 9099
	MetricsPort = 9091
	// Group is Calico's API group.
	Group = "crd.projectcalico.org"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// CRDs are Calico's CustomResourceDefinitions, sorted by name. Felix lists
// several of them at start and waits for ClusterInformation; all of them are
// inert without Calico's other components. The embedded files are parsed
// once; each call returns copies the caller may change.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	parsed, err := parsedCRDs()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, len(parsed))
	for i, crd := range parsed {
		out[i] = crd.DeepCopy()
	}
	return out, nil
}

// parsedCRDs decodes the embedded CRDs the first time it is called: the
// operator renders them on every pass over every tenant.
var parsedCRDs = sync.OnceValues(func() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := crdFiles.ReadDir("crds")
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		data, err := crdFiles.ReadFile(path.Join("crds", e.Name()))
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("calico CRD %s: %w", e.Name(), err)
		}
		crd.TypeMeta = metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}
		out = append(out, crd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
})

// Params shape the objects of one cluster.
type Params struct {
	// Namespace holds the ServiceAccounts (kube-system in a tenant).
	Namespace string
	// PodCIDRs get an IPPool each, so Felix masquerades traffic from pods
	// to addresses outside every pool.
	PodCIDRs []string
	// FelixUsers and CNIUsers are further subjects of the two roles: hosts
	// that run Felix or the CNI plugin with a client certificate instead of
	// a ServiceAccount token.
	FelixUsers []string
	CNIUsers   []string
	// Labels go on every object.
	Labels map[string]string
}

// Objects renders, in apply order, the CRDs, the ServiceAccounts, roles
// and bindings, the ClusterInformation and the IPPools. The last two are
// custom resources: they can only be applied once the CRDs are
// established.
func Objects(p Params) ([]client.Object, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var objs []client.Object
	for _, crd := range crds {
		crd.Labels = p.Labels
		objs = append(objs, crd)
	}
	objs = append(objs, RBAC(p)...)
	objs = append(objs, Resources(p)...)
	return objs, nil
}

// RBAC renders the ServiceAccounts, ClusterRoles and ClusterRoleBindings.
// The rules are upstream's for calico-node and the CNI plugin in Kubernetes
// datastore mode, without what BGP, Typha and Calico IPAM need.
func RBAC(p Params) []client.Object {
	meta := func(name, namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: p.Labels}
	}
	read := []string{"get", "list", "watch"}
	felixRules := []rbacv1.PolicyRule{
		// Felix hands the CNI plugin a token of its own ServiceAccount.
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, ResourceNames: []string{CNIName}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "nodes", "namespaces", "serviceaccounts", "endpoints", "services"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{Group}, Resources: []string{
			"felixconfigurations", "ippools", "ipreservations", "ipamblocks", "globalnetworkpolicies", "globalnetworksets",
			"networkpolicies", "networksets", "clusterinformations", "hostendpoints", "blockaffinities", "caliconodestatuses",
			"bgpconfigurations", "bgppeers", "bgpfilters",
		}, Verbs: read},
		// Felix writes its per-node configuration and status.
		{APIGroups: []string{Group}, Resources: []string{"felixconfigurations", "clusterinformations"}, Verbs: []string{"create", "update"}},
		{APIGroups: []string{Group}, Resources: []string{"caliconodestatuses"}, Verbs: []string{"update"}},
	}
	cniRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "nodes", "namespaces"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{Group}, Resources: []string{"clusterinformations"}, Verbs: []string{"get"}},
	}
	subjects := func(sa string, users []string) []rbacv1.Subject {
		s := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: p.Namespace}}
		for _, u := range users {
			s = append(s, rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: u})
		}
		return s
	}
	var objs []client.Object
	for _, r := range []struct {
		name  string
		rules []rbacv1.PolicyRule
		users []string
	}{{FelixName, felixRules, p.FelixUsers}, {CNIName, cniRules, p.CNIUsers}} {
		objs = append(objs,
			&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(r.name, p.Namespace)},
			&rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}, ObjectMeta: meta(r.name, ""), Rules: r.rules},
			&rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: meta(r.name, ""),
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: r.name},
				Subjects: subjects(r.name, r.users)},
		)
	}
	return objs
}

// Resources renders the ClusterInformation Felix waits for ("datastore
// ready") and the IPPools.
func Resources(p Params) []client.Object {
	obj := func(kind, name string, spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		u.SetAPIVersion(Group + "/v1")
		u.SetKind(kind)
		u.SetName(name)
		u.SetLabels(p.Labels)
		return u
	}
	objs := []client.Object{obj("ClusterInformation", "default", map[string]any{"datastoreReady": true})}
	for i, cidr := range p.PodCIDRs {
		name := "pods"
		if i > 0 {
			name += "-" + strconv.Itoa(i)
		}
		objs = append(objs, obj("IPPool", name, map[string]any{
			"cidr": cidr, "natOutgoing": true, "ipipMode": "Never", "vxlanMode": "Never", "nodeSelector": "all()",
		}))
	}
	return objs
}

// CNI shapes a node's Calico CNI network configuration.
type CNI struct {
	// NodeName is the node's name in the cluster; the literal
	// __KUBERNETES_NODE_NAME__ lets upstream's installer fill it in.
	NodeName string
	// Subnet is the node's pod range, or "usePodCidr" for the Node's
	// spec.podCIDR.
	Subnet string
	// DataDir holds host-local IPAM's allocations; empty is its default.
	DataDir string
	// Kubeconfig is what the plugin reads pods with; the literal
	// __KUBECONFIG_FILEPATH__ lets upstream's installer fill it in.
	Kubeconfig string
	// LogFile is the plugin's log; empty logs to standard error only.
	LogFile string
	// MTU of the pods' interfaces; 1500 when zero.
	MTU int
}

// Config renders the network configuration list: the Calico plugin with
// host-local IPAM and Kubernetes NetworkPolicy, then portmap for hostPort.
func (c CNI) Config() (string, error) {
	mtu := c.MTU
	if mtu == 0 {
		mtu = 1500
	}
	ipam := map[string]any{"type": "host-local", "subnet": c.Subnet}
	if c.DataDir != "" {
		ipam["dataDir"] = c.DataDir
	}
	plugin := map[string]any{
		"type": "calico", "datastore_type": "kubernetes",
		"nodename": c.NodeName, "nodename_file_optional": true,
		"mtu": mtu, "ipam": ipam, "policy": map[string]any{"type": "k8s"},
		"kubernetes": map[string]any{"kubeconfig": c.Kubeconfig},
	}
	if c.LogFile != "" {
		plugin["log_file_path"] = c.LogFile
	}
	out, err := json.MarshalIndent(map[string]any{
		"name": NetworkName, "cniVersion": "0.3.1",
		"plugins": []any{plugin, map[string]any{"type": "portmap", "snat": true, "capabilities": map[string]bool{"portMappings": true}}},
	}, "", "  ")
	return string(out), err
}

// Felix shapes Felix's settings on one node.
type Felix struct {
	// NodeName is the node's name in the cluster; Felix polices the pods
	// whose spec.nodeName it is.
	NodeName string
	// LogSeverity is Felix's log level; "info" when empty.
	LogSeverity string
}

// Env is Felix's configuration as environment variables (Felix reads
// KUBECONFIG, for the Kubernetes datastore, only from there). Felix uses the
// iptables dataplane with the nftables backend, as kube-proxy does here,
// never legacy tables; pod to host traffic that egress policy allows falls
// through to the host's own INPUT rules.
func (f Felix) Env() map[string]string {
	sev := f.LogSeverity
	if sev == "" {
		sev = "info"
	}
	return map[string]string{
		"FELIX_DATASTORETYPE":               "kubernetes",
		"FELIX_FELIXHOSTNAME":               f.NodeName,
		"FELIX_IPTABLESBACKEND":             "nft",
		"FELIX_IPV6SUPPORT":                 "false",
		"FELIX_DEFAULTENDPOINTTOHOSTACTION": "RETURN",
		"FELIX_XDPENABLED":                  "false",
		"FELIX_BPFENABLED":                  "false",
		"FELIX_HEALTHENABLED":               "true",
		"FELIX_HEALTHHOST":                  "127.0.0.1",
		"FELIX_HEALTHPORT":                  strconv.Itoa(HealthPort),
		"FELIX_PROMETHEUSMETRICSENABLED":    "true",
		"FELIX_PROMETHEUSMETRICSHOST":       "127.0.0.1",
		"FELIX_PROMETHEUSMETRICSPORT":       strconv.Itoa(MetricsPort),
		"FELIX_USAGEREPORTINGENABLED":       "false",
		"FELIX_LOGSEVERITYSCREEN":           sev,
		"FELIX_LOGFILEPATH":                 "none",
		"FELIX_LOGSEVERITYSYS":              "none",
		"FELIX_INTERFACEPREFIX":             InterfacePrefix,
	}
}

// EnvList is Env as sorted NAME=value strings.
func (f Felix) EnvList() []string {
	env := f.Env()
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
