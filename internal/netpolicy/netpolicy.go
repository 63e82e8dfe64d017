package netpolicy

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/tenantlb"
)

// The admin cluster's DNS: the pods behind the kube-dns Service, as every
// Kubernetes distribution labels them.
const (
	DNSNamespace = "kube-system"
	DNSPort      = 53
)

// DNSLabels select the admin cluster's DNS pods in DNSNamespace.
func DNSLabels() map[string]string { return map[string]string{"k8s-app": "kube-dns"} }

// Names of a tenant's policies.
func DefaultDenyName(tenant string) string   { return tenant + "-default-deny" }
func ControlPlaneName(tenant string) string  { return tenant + "-control-plane" }
func LoadBalancersName(tenant string) string { return tenant + "-load-balancers" }

// Peer is a set of pods in another namespace.
type Peer struct {
	Namespace string
	Labels    map[string]string
}

// Params is everything a tenant's policies depend on.
type Params struct {
	// Tenant is the TenantCluster's name; Namespace its namespace, where
	// its pods and the policies are.
	Tenant    string
	Namespace string
	// APIServerPort is the port the API server listens on inside its pod:
	// the node port itself with NodePort exposure.
	APIServerPort int32
	// Tunnel says the tunnel server runs beside the API server and carries
	// all of its connections to the tenant's nodes, pods and Services.
	Tunnel bool
	// Gateway are the pods of the tenant's Datastore's gateway.
	Gateway Peer
	// MovedFrom, when set, are the pods of the gateway of the Datastore
	// the tenant moved from: API servers not yet rolled onto the new
	// gateway still reach the old one, which forwards them.
	MovedFrom *Peer
	// Operator are the operator's pods.
	Operator Peer
	// LoadBalancerPorts are the TCP ports the tenant's load balancers
	// listen on (every load balancer's, together).
	LoadBalancerPorts []int32
	// SharedNamespace says the namespace holds pods that are not the
	// tenant's (the operator's own namespace, kube-system): the catch-all
	// policy then selects only the tenant's pods, instead of every pod.
	SharedNamespace bool
	// ProtectedNetworks are the admin cluster's own networks (its pod
	// ranges, its nodes' addresses), as ParseProtectedNetworks returns
	// them: a control plane without the tunnel reaches anywhere but
	// these. Empty leaves its egress open.
	ProtectedNetworks []netip.Prefix
}

// Policies are the tenant's NetworkPolicies: the catch-all that denies
// everything, then the control plane's and the load balancers' allowances
// (policies add up: a pod may do what any policy selecting it allows).
func Policies(p Params) []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{DefaultDeny(p), ControlPlane(p), LoadBalancers(p)}
}

// DefaultDeny selects every pod of the namespace (only the tenant's, in a
// shared namespace) and allows nothing: a pod the operator did not fence
// on purpose reaches nothing and is reached by nothing.
func DefaultDeny(p Params) *networkingv1.NetworkPolicy {
	sel := metav1.LabelSelector{}
	if p.SharedNamespace {
		sel.MatchLabels = map[string]string{controlplane.LabelTenant: p.Tenant}
	}
	return policy(p, DefaultDenyName(p.Tenant), sel, nil, nil)
}

// ControlPlane fences the control-plane pods. The controller manager and
// the scheduler reach the API server at 127.0.0.1 in the same pod, and
// the API server reaches the tunnel server through a Unix socket in a
// volume of the pod: neither crosses the network, so neither needs a rule.
func ControlPlane(p Params) *networkingv1.NetworkPolicy {
	ingress := []networkingv1.NetworkPolicyIngressRule{
		// Customers, the tenant's nodes and its pods reach the API server
		// from outside the admin cluster, often through NodePort or
		// load-balancer forwarding that hides their address: any source.
		{Ports: tcp(p.APIServerPort)},
	}
	if p.Tunnel {
		ingress = append(ingress,
			// The tenant's tunnel agents dial in from its nodes, wherever
			// they are (TLS with a tenant-CA agent certificate keeps
			// others out).
			networkingv1.NetworkPolicyIngressRule{Ports: tcp(controlplane.TunnelPort)},
			// The tunnel's client port is for the tenant's own load
			// balancers only, never another tenant's.
			networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: tenantlb.Labels(p.Tenant, "")}}},
				Ports: tcp(controlplane.TunnelClientPort),
			})
	}
	// The operator applies the tenant's bootstrap objects and addons
	// through its API server, at the Service, and may look at any port
	// (the tunnel server's /healthz and /metrics included) when it
	// diagnoses a control plane.
	ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{peer(p.Operator)}})

	egress := []networkingv1.NetworkPolicyEgressRule{
		// The API server's only storage: the Datastore's gateway, reached
		// at its Service's address (the policy sees the gateway pod and
		// its port once kube-proxy has translated it).
		{To: []networkingv1.NetworkPolicyPeer{peer(p.Gateway)}, Ports: tcp(gatewaydeploy.ClientPort)},
		// The admin cluster's DNS, for names the API server is given
		// (in extraArgs, or a gateway endpoint by name): every address it
		// dials today is an IP, but a name must not hang the API server
		// until the resolver times out.
		dns(),
	}
	if p.MovedFrom != nil {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{peer(*p.MovedFrom)}, Ports: tcp(gatewaydeploy.ClientPort)})
	}

	if !p.Tunnel {
		egress = append(egress, tenantNetwork(p.ProtectedNetworks))
	}
	return policy(p, ControlPlaneName(p.Tenant), metav1.LabelSelector{MatchLabels: controlplane.Labels(p.Tenant)}, ingress, egress)
}

// LoadBalancers fences every load balancer of the tenant. Their
// /healthz and /metrics port is left to the kubelet on their node, which
// a policy never stops.
func LoadBalancers(p Params) *networkingv1.NetworkPolicy {
	var ingress []networkingv1.NetworkPolicyIngressRule
	// A rule without ports would allow every port: with no load-balanced
	// port there is no ingress rule at all.
	if ports := uniqueSorted(p.LoadBalancerPorts); len(ports) > 0 {
		// Clients of a tenant Service of type LoadBalancer come from
		// anywhere, through the admin cluster's load balancer. A load
		// balancer accepts on the ports of the tenant's other load
		// balancers too; nothing listens there.
		ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: tcp(ports...)}}
	}
	egress := []networkingv1.NetworkPolicyEgressRule{
		// Load balancers reach the tenant's nodes only through the tunnel
		// servers' client port, at the tenant's own control-plane pods.
		// Without the tunnel no load balancer runs.
		{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: controlplane.Labels(p.Tenant)}}},
			Ports: tcp(controlplane.TunnelClientPort)},
		// The admin cluster's DNS, should the tunnel's address be given by
		// name (it is its Service's IP today).
		dns(),
	}
	return policy(p, LoadBalancersName(p.Tenant), metav1.LabelSelector{MatchLabels: tenantlb.Labels(p.Tenant, "")}, ingress, egress)
}

// policy is a NetworkPolicy isolating the selected pods in both
// directions, with the given allowances.
func policy(p Params, name string, sel metav1.LabelSelector, ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     ingress,
			Egress:      egress,
		},
	}
}

// peer selects pods by labels in a namespace named p.Namespace (both must
// match: one peer, two selectors).
func peer(p Peer) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: p.Namespace}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: p.Labels},
	}
}

// dns allows queries to the admin cluster's DNS pods, over UDP and, for
// long answers, TCP.
func dns() networkingv1.NetworkPolicyEgressRule {
	udp, tcpProto := corev1.ProtocolUDP, corev1.ProtocolTCP
	port := intstr.FromInt32(DNSPort)
	return networkingv1.NetworkPolicyEgressRule{
		To:    []networkingv1.NetworkPolicyPeer{peer(Peer{Namespace: DNSNamespace, Labels: DNSLabels()})},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}, {Protocol: &tcpProto, Port: &port}},
	}
}

// tenantNetwork is the egress of an API server without the tunnel, which
// dials the tenant's kubelets, pods, Services and webhooks directly, at
// addresses of the tenant's network that no policy here can name: any
// address but the admin cluster's own networks. Policies are evaluated
// after kube-proxy's translation, so an admin Service's address counts
// as the pod or node behind it; the admin Service range itself is not
// excepted, since tenants use the same default ranges and their
// addresses must go on to the node (where the local admin node's fence
// refuses them). The gateway and DNS rules, naming pods, still allow
// those pods in a protected pod range: rules add up. Without protected
// networks the rule allows everything; turn the tunnel on to close it.
func tenantNetwork(protected []netip.Prefix) networkingv1.NetworkPolicyEgressRule {
	if len(protected) == 0 {
		return networkingv1.NetworkPolicyEgressRule{}
	}
	except := make([]string, len(protected))
	for i, n := range protected {
		except[i] = n.String()
	}
	return networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: except}}},
	}
}

// tcp lists TCP ports.
func tcp(ports ...int32) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, 0, len(ports))
	for _, n := range ports {
		proto, port := corev1.ProtocolTCP, intstr.FromInt32(n)
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port})
	}
	return out
}

// uniqueSorted drops zero and repeated ports, so the rendering is stable
// whatever order the load balancers were listed in.
func uniqueSorted(ports []int32) []int32 {
	out := slices.DeleteFunc(slices.Clone(ports), func(p int32) bool { return p <= 0 })
	slices.Sort(out)
	return slices.Compact(out)
}
