package netpolicy

import (
	"fmt"
	"net/netip"
	"testing"

	"kubinception.dev/kubinception/internal/goldenfile"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/tenantlb"
)

const (
	ns        = "team-a"
	system    = "kubinception-system"
	nodePort  = 31234
	lbPort    = 443
	otherPort = 8080
)

func testParams() Params {
	return Params{
		Tenant: "demo", Namespace: ns, APIServerPort: nodePort, Tunnel: true,
		Gateway:           Peer{Namespace: system, Labels: gatewaydeploy.Labels("default")},
		Operator:          Peer{Namespace: system, Labels: map[string]string{"app.kubernetes.io/name": "kubinception-manager"}},
		LoadBalancerPorts: []int32{otherPort, lbPort, lbPort, 0},
		ProtectedNetworks: []netip.Prefix{netip.MustParsePrefix(adminNodeIP + "/32"), netip.MustParsePrefix(adminPodRange)},
	}
}

// The admin cluster's networks in these tests: its pods' range and its
// node's address, as on the local admin cluster.
const (
	adminPodRange = "10.200.0.0/16"
	adminNodeIP   = "10.199.0.1"
)

// endpoint is one end of a connection: a pod (namespace and labels) or,
// with outside set, an address that is no admin-cluster pod (a customer,
// a tenant node, anything reached through NodePort, the admin node
// itself); ip is its address as a policy sees it, after kube-proxy's
// translation.
type endpoint struct {
	name    string
	ns      string
	labels  map[string]string
	outside bool
	ip      string
}

var (
	customer      = endpoint{name: "a customer", outside: true, ip: "203.0.113.7"}
	tenantNode    = endpoint{name: "a tenant node", outside: true, ip: "10.210.1.10"}
	tenantPod     = endpoint{name: "a tenant pod", outside: true, ip: "10.244.1.5"}
	tenantService = endpoint{name: "a tenant Service address", outside: true, ip: "10.96.0.10"}
	adminNode     = endpoint{name: "the admin node (its API server, kubelet)", outside: true, ip: adminNodeIP}
	nearAdminNode = endpoint{name: "the address next to the admin node's", outside: true, ip: "10.199.0.2"}
	apiserver     = endpoint{name: "demo's control plane", ns: ns, labels: controlplane.Labels("demo"), ip: "10.200.1.2"}
	lb            = endpoint{name: "demo's load balancer", ns: ns, labels: tenantlb.Labels("demo", "demo-lb-0123456789"), ip: "10.200.1.3"}
	otherCP       = endpoint{name: "another tenant's control plane", ns: "team-b", labels: controlplane.Labels("other"), ip: "10.200.2.2"}
	otherLB       = endpoint{name: "another tenant's load balancer", ns: "team-b", labels: tenantlb.Labels("other", "other-lb-0123456789"), ip: "10.200.2.3"}
	sameNSOtherLB = endpoint{name: "a load balancer of another tenant in the namespace", ns: ns, labels: tenantlb.Labels("other", "other-lb-9876543210"), ip: "10.200.1.4"}
	stray         = endpoint{name: "another pod in the namespace", ns: ns, labels: map[string]string{"app": "stray"}, ip: "10.200.1.5"}
	operator      = endpoint{name: "the operator", ns: system, labels: map[string]string{"app.kubernetes.io/name": "kubinception-manager", "app.kubernetes.io/managed-by": "kubinception"}, ip: "10.200.0.10"}
	impostor      = endpoint{name: "an operator-labelled pod elsewhere", ns: "team-b", labels: map[string]string{"app.kubernetes.io/name": "kubinception-manager"}, ip: "10.200.2.4"}
	gateway       = endpoint{name: "the gateway", ns: system, labels: gatewaydeploy.Labels("default"), ip: "10.200.0.11"}
	otherGateway  = endpoint{name: "another Datastore's gateway", ns: system, labels: gatewaydeploy.Labels("other"), ip: "10.200.0.12"}
	dnsPod        = endpoint{name: "the admin DNS", ns: DNSNamespace, labels: DNSLabels(), ip: "10.200.0.2"}
	adminPod      = endpoint{name: "an admin-cluster pod", ns: "monitoring", labels: map[string]string{"app": "prometheus"}, ip: "10.200.3.2"}
)

// allowed evaluates NetworkPolicy semantics for a connection from src to
// dst on port/proto: each side that is a pod selected by a policy of its
// namespace (for that direction) needs a rule of one of those policies
// allowing the other side and the port.
func allowed(t *testing.T, pols []*networkingv1.NetworkPolicy, src, dst endpoint, proto corev1.Protocol, port int32) bool {
	t.Helper()
	return side(t, pols, src, dst, proto, port, networkingv1.PolicyTypeEgress) &&
		side(t, pols, dst, src, proto, port, networkingv1.PolicyTypeIngress)
}

// side says whether pod's policies of direction typ let it talk to peer.
func side(t *testing.T, pols []*networkingv1.NetworkPolicy, pod, peer endpoint, proto corev1.Protocol, port int32, typ networkingv1.PolicyType) bool {
	if pod.outside {
		return true
	}
	isolated := false
	for _, pol := range pols {
		if pol.Namespace != pod.ns || !matches(t, &pol.Spec.PodSelector, pod.labels) || !hasType(pol, typ) {
			continue
		}
		isolated = true
		if typ == networkingv1.PolicyTypeIngress {
			for _, r := range pol.Spec.Ingress {
				if peersMatch(t, pol.Namespace, r.From, peer) && portsMatch(r.Ports, proto, port) {
					return true
				}
			}
		} else {
			for _, r := range pol.Spec.Egress {
				if peersMatch(t, pol.Namespace, r.To, peer) && portsMatch(r.Ports, proto, port) {
					return true
				}
			}
		}
	}
	return !isolated
}

func hasType(pol *networkingv1.NetworkPolicy, typ networkingv1.PolicyType) bool {
	for _, pt := range pol.Spec.PolicyTypes {
		if pt == typ {
			return true
		}
	}
	return false
}

func matches(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(l))
}

// peersMatch: no peers means every source or destination; a peer with
// only a pod selector means pods of the policy's own namespace; an
// ipBlock matches any endpoint, pod or not, by its address (Calico's
// reading: pod addresses count too).
func peersMatch(t *testing.T, policyNS string, peers []networkingv1.NetworkPolicyPeer, e endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if inBlock(t, p.IPBlock, e) {
				return true
			}
			continue
		}
		if e.outside {
			continue
		}
		nsOK := e.ns == policyNS
		if p.NamespaceSelector != nil {
			nsOK = matches(t, p.NamespaceSelector, map[string]string{corev1.LabelMetadataName: e.ns})
		}
		podOK := p.PodSelector == nil || matches(t, p.PodSelector, e.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// inBlock says whether e's address lies in the block's cidr and in none
// of its exceptions.
func inBlock(t *testing.T, b *networkingv1.IPBlock, e endpoint) bool {
	t.Helper()
	if e.ip == "" {
		t.Fatalf("%s has no address to match ipBlock %+v against", e.name, b)
	}
	addr := netip.MustParseAddr(e.ip)
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		t.Fatalf("ipBlock cidr %q: %v", b.CIDR, err)
	}
	if !cidr.Contains(addr) {
		return false
	}
	for _, x := range b.Except {
		except, err := netip.ParsePrefix(x)
		if err != nil {
			t.Fatalf("ipBlock except %q: %v", x, err)
		}
		if except.Contains(addr) {
			return false
		}
	}
	return true
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp == proto && (p.Port == nil || p.Port.IntValue() == int(port)) {
			return true
		}
	}
	return false
}

type flow struct {
	src, dst endpoint
	proto    corev1.Protocol
	port     int32
	want     bool
}

func (f flow) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", f.src.name, f.dst.name, f.proto, f.port)
}

const tcpP, udpP = corev1.ProtocolTCP, corev1.ProtocolUDP

func TestFlows(t *testing.T) {
	noTunnel := testParams()
	noTunnel.Tunnel = false
	unfenced := noTunnel
	unfenced.ProtectedNetworks = nil
	noLB := testParams()
	noLB.LoadBalancerPorts = nil
	shared := testParams()
	shared.Namespace, shared.SharedNamespace = system, true
	sharedAPIServer := endpoint{name: "demo's control plane", ns: system, labels: controlplane.Labels("demo")}

	for _, tc := range []struct {
		name  string
		p     Params
		flows []flow
	}{
		{"tunnel", testParams(), []flow{
			// Into the control plane.
			{customer, apiserver, tcpP, nodePort, true},
			{tenantNode, apiserver, tcpP, controlplane.TunnelPort, true},
			{customer, apiserver, tcpP, controlplane.DefaultPort, false}, // not the port it listens on with NodePort
			{customer, apiserver, tcpP, controlplane.TunnelHTTPPort, false},
			{customer, apiserver, tcpP, controlplane.TunnelClientPort, false},
			{customer, apiserver, udpP, nodePort, false},
			{lb, apiserver, tcpP, controlplane.TunnelClientPort, true},
			{lb, apiserver, tcpP, controlplane.TunnelHTTPPort, false},
			{otherLB, apiserver, tcpP, controlplane.TunnelClientPort, false},
			{sameNSOtherLB, apiserver, tcpP, controlplane.TunnelClientPort, false},
			{otherCP, apiserver, tcpP, controlplane.TunnelClientPort, false},
			{operator, apiserver, tcpP, nodePort, true},
			{operator, apiserver, tcpP, controlplane.TunnelHTTPPort, true},
			{impostor, apiserver, tcpP, controlplane.TunnelHTTPPort, false},
			{adminPod, apiserver, tcpP, controlplane.TunnelHTTPPort, false},
			{stray, apiserver, tcpP, controlplane.TunnelClientPort, false},
			// Out of the control plane.
			{apiserver, gateway, tcpP, gatewaydeploy.ClientPort, true},
			{apiserver, gateway, tcpP, gatewaydeploy.HTTPPort, false},
			{apiserver, gateway, tcpP, gatewaydeploy.AdminPort, false},
			{apiserver, otherGateway, tcpP, gatewaydeploy.ClientPort, false},
			{apiserver, dnsPod, udpP, DNSPort, true},
			{apiserver, dnsPod, tcpP, DNSPort, true},
			{apiserver, dnsPod, tcpP, 9153, false},
			{apiserver, adminPod, tcpP, 443, false},
			{apiserver, operator, tcpP, 8080, false},
			{apiserver, otherCP, tcpP, controlplane.DefaultPort, false},
			{apiserver, tenantNode, tcpP, 10250, false},
			{apiserver, customer, tcpP, 443, false},
			// The load balancers.
			{customer, lb, tcpP, lbPort, true},
			{customer, lb, tcpP, otherPort, true},
			{customer, lb, tcpP, tenantlb.HTTPPort, false},
			{operator, lb, tcpP, tenantlb.HTTPPort, false},
			{lb, apiserver, tcpP, nodePort, false},
			{lb, otherCP, tcpP, controlplane.TunnelClientPort, false},
			{lb, dnsPod, udpP, DNSPort, true},
			{lb, tenantNode, tcpP, 30080, false},
			{lb, gateway, tcpP, gatewaydeploy.ClientPort, false},
			// Anything else in the namespace.
			{customer, stray, tcpP, 80, false},
			{stray, customer, tcpP, 443, false},
			{stray, dnsPod, udpP, DNSPort, false},
			// Other namespaces are not this tenant's business.
			{adminPod, operator, tcpP, 8080, true},
		}},
		{"no tunnel", noTunnel, []flow{
			{customer, apiserver, tcpP, nodePort, true},
			{tenantNode, apiserver, tcpP, controlplane.TunnelPort, false},
			{lb, apiserver, tcpP, controlplane.TunnelClientPort, false},
			// The tenant's network, dialled directly.
			{apiserver, tenantNode, tcpP, 10250, true},
			{apiserver, tenantPod, tcpP, 8443, true},
			{apiserver, tenantService, tcpP, 443, true},
			{apiserver, customer, tcpP, 443, true}, // a webhook outside
			{apiserver, nearAdminNode, tcpP, 6443, true},
			// What the other rules allow, inside the protected pod range.
			{apiserver, gateway, tcpP, gatewaydeploy.ClientPort, true},
			{apiserver, dnsPod, udpP, DNSPort, true},
			{apiserver, dnsPod, tcpP, DNSPort, true},
			// The admin cluster's own networks: nothing else.
			{apiserver, gateway, tcpP, gatewaydeploy.HTTPPort, false},
			{apiserver, gateway, tcpP, gatewaydeploy.AdminPort, false},
			{apiserver, otherGateway, tcpP, gatewaydeploy.ClientPort, false},
			{apiserver, dnsPod, tcpP, 9153, false},
			{apiserver, adminNode, tcpP, 6443, false},
			{apiserver, adminNode, tcpP, 10250, false},
			{apiserver, operator, tcpP, 8080, false},
			{apiserver, adminPod, tcpP, 443, false},
			{apiserver, otherCP, tcpP, controlplane.DefaultPort, false},
			{apiserver, otherLB, tcpP, 443, false},
		}},
		// An operator not told the admin cluster's networks leaves the
		// egress of a control plane without the tunnel open.
		{"no tunnel, no protected networks", unfenced, []flow{
			{apiserver, tenantNode, tcpP, 10250, true},
			{apiserver, adminNode, tcpP, 6443, true},
			{apiserver, operator, tcpP, 8080, true},
		}},
		{"no load balancer", noLB, []flow{
			{customer, lb, tcpP, lbPort, false},
			{customer, lb, tcpP, tenantlb.HTTPPort, false},
			{lb, apiserver, tcpP, controlplane.TunnelClientPort, true},
		}},
		{"shared namespace", shared, []flow{
			{customer, sharedAPIServer, tcpP, nodePort, true},
			{customer, sharedAPIServer, tcpP, controlplane.TunnelHTTPPort, false},
			// The operator and the gateways live here: the catch-all
			// leaves them alone.
			{operator, adminPod, tcpP, 443, true},
			{adminPod, gateway, tcpP, gatewaydeploy.HTTPPort, true},
			{sharedAPIServer, gateway, tcpP, gatewaydeploy.ClientPort, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pols := Policies(tc.p)
			for _, f := range tc.flows {
				if got := allowed(t, pols, f.src, f.dst, f.proto, f.port); got != f.want {
					t.Errorf("%s: allowed = %t, want %t", f, got, f.want)
				}
			}
		})
	}
}

// TestEveryPolicyIsolatesBothWays: a policy without Egress in its types
// would leave the pods it selects free to dial anything.
func TestEveryPolicyIsolatesBothWays(t *testing.T) {
	for _, p := range []Params{testParams(), func() Params { p := testParams(); p.Tunnel = false; p.SharedNamespace = true; return p }()} {
		for _, pol := range Policies(p) {
			if !hasType(pol, networkingv1.PolicyTypeIngress) || !hasType(pol, networkingv1.PolicyTypeEgress) {
				t.Errorf("%s: policyTypes %v, want Ingress and Egress", pol.Name, pol.Spec.PolicyTypes)
			}
			if pol.Namespace != p.Namespace {
				t.Errorf("%s in namespace %q, want %q", pol.Name, pol.Namespace, p.Namespace)
			}
		}
	}
}

func TestDefaultDenySelector(t *testing.T) {
	p := testParams()
	if sel := DefaultDeny(p).Spec.PodSelector; len(sel.MatchLabels) != 0 || len(sel.MatchExpressions) != 0 {
		t.Errorf("catch-all selects %v, want every pod of the tenant's namespace", sel)
	}
	p.SharedNamespace = true
	want := map[string]string{controlplane.LabelTenant: "demo"}
	if diff := cmp.Diff(want, DefaultDeny(p).Spec.PodSelector.MatchLabels); diff != "" {
		t.Errorf("catch-all in a shared namespace (-want +got):\n%s", diff)
	}
}

func TestRenderedPoliciesMatchGolden(t *testing.T) {
	for name, p := range map[string]Params{
		"policies.yaml":           testParams(),
		"policies-no-tunnel.yaml": func() Params { p := testParams(); p.Tunnel = false; p.LoadBalancerPorts = nil; return p }(),
	} {
		var out []byte
		for _, pol := range Policies(p) {
			b, err := yaml.Marshal(pol)
			if err != nil {
				t.Fatal(err)
			}
			out = append(append(out, "---\n"...), b...)
		}
		goldenfile.Check(t, name, out)
	}
}
