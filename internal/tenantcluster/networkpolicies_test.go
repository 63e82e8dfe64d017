package tenantcluster_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/lb"
	"kubinception.dev/kubinception/internal/netpolicy"
	"kubinception.dev/kubinception/internal/tenantlb"
)

// networkPolicy reads one of the tenant's NetworkPolicies; it fails the
// test when it is missing or not controlled by the TenantCluster.
func (e *env) networkPolicy(t *testing.T, tc *kv1.TenantCluster, name string) *networkingv1.NetworkPolicy {
	t.Helper()
	pol := &networkingv1.NetworkPolicy{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tc.Namespace, Name: name}, pol); err != nil {
		t.Fatalf("NetworkPolicy %s/%s: %v", tc.Namespace, name, err)
	}
	if ref := metav1.GetControllerOf(pol); ref == nil || ref.UID != tc.UID {
		t.Errorf("NetworkPolicy %s is not controlled by the TenantCluster: %+v", name, pol.OwnerReferences)
	}
	return pol
}

// ingressPorts lists "from-any:PORT" or "from-peers:PORT" for every port
// of every ingress rule, and "from-any:*" for a rule without ports.
func ingressPorts(pol *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, r := range pol.Spec.Ingress {
		from := "from-any"
		if len(r.From) > 0 {
			from = "from-peers"
		}
		if len(r.Ports) == 0 {
			out = append(out, from+":*")
		}
		for _, p := range r.Ports {
			out = append(out, from+":"+p.Port.String())
		}
	}
	return out
}

// TestNetworkPolicies: a tenant in a namespace of its own gets its
// policies before its control plane's Deployment: everything in the
// namespace denied, the control plane reachable on its API server's node
// port and the tunnel's ports, reaching its Datastore's gateway, and its
// load balancers reachable on the ports they serve once they exist.
func TestNetworkPolicies(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-t"}}
	if err := e.api.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "walled", Namespace: ns.Name},
		Spec: kv1.TenantClusterSpec{Datastore: kv1.DatastorePlacement{Name: e.ds.Name}}}
	if err := e.api.Client.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	e.mustReconcile(t, tc)
	got := e.get(t, tc)
	if c := wantCondition(t, got, kv1.ConditionNetworkFenced, metav1.ConditionTrue, kv1.ReasonNetworkPoliciesApplied); !strings.Contains(c.Message, "every other pod of the namespace") {
		t.Errorf("NetworkFenced message %q does not say the namespace is closed", c.Message)
	}

	deny := e.networkPolicy(t, got, netpolicy.DefaultDenyName(tc.Name))
	if sel := deny.Spec.PodSelector; len(sel.MatchLabels)+len(sel.MatchExpressions) != 0 {
		t.Errorf("catch-all selects %v, want every pod of %s", sel, ns.Name)
	}
	if len(deny.Spec.Ingress)+len(deny.Spec.Egress) != 0 || len(deny.Spec.PolicyTypes) != 2 {
		t.Errorf("catch-all %+v, want both directions denied", deny.Spec)
	}

	svc := &corev1.Service{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: cp.ServiceName(tc.Name)}, svc); err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	ctl := e.networkPolicy(t, got, netpolicy.ControlPlaneName(tc.Name))
	if diff := cmp.Diff(cp.Labels(tc.Name), ctl.Spec.PodSelector.MatchLabels); diff != "" {
		t.Errorf("control-plane policy selects (-want +got):\n%s", diff)
	}
	want := []string{"from-any:" + strconv.Itoa(int(nodePort)), "from-any:8132", "from-peers:8134", "from-peers:*"}
	if diff := cmp.Diff(want, ingressPorts(ctl)); diff != "" {
		t.Errorf("control-plane ingress (-want +got):\n%s", diff)
	}
	if len(ctl.Spec.Egress) != 2 {
		t.Fatalf("control-plane egress %+v, want the gateway and DNS", ctl.Spec.Egress)
	}
	gw := ctl.Spec.Egress[0]
	if len(gw.To) != 1 || gw.To[0].NamespaceSelector == nil || gw.To[0].PodSelector == nil ||
		gw.To[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != e.ns ||
		!cmp.Equal(gw.To[0].PodSelector.MatchLabels, gatewaydeploy.Labels(e.ds.Name)) ||
		len(gw.Ports) != 1 || gw.Ports[0].Port.IntValue() != gatewaydeploy.ClientPort {
		t.Errorf("control-plane egress to the gateway %+v, want Datastore %s's gateway pods in %s on %d", gw, e.ds.Name, e.ns, gatewaydeploy.ClientPort)
	}
	operator := ctl.Spec.Ingress[3].From[0]
	if operator.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != install.Namespace || !cmp.Equal(operator.PodSelector.MatchLabels, install.OperatorLabels()) {
		t.Errorf("operator peer %+v, want the operator's pods in %s", operator, install.Namespace)
	}
	lbs := e.networkPolicy(t, got, netpolicy.LoadBalancersName(tc.Name))
	if len(lbs.Spec.Ingress) != 0 {
		t.Errorf("load balancers reachable on %v without a load balancer", ingressPorts(lbs))
	}

	// A load balancer appears (the load-balancer phase's work): its ports
	// open at the next reconcile.
	dep := tenantlb.Deployment(tenantlb.Params{Tenant: tc.Name, Namespace: ns.Name, Service: types.NamespacedName{Namespace: "default", Name: "web"},
		Ports: []lb.Port{{Name: "https", Listen: 443, NodePort: 30443}, {Name: "http", Listen: 80, NodePort: 30080}},
		Image: "kubinception.local/kubinception:test", Tunnel: "10.96.0.20:8134", ServerName: "x", PKISecret: cp.PKISecretName(tc.Name), Replicas: 1})
	if err := e.api.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	lbs = e.networkPolicy(t, got, netpolicy.LoadBalancersName(tc.Name))
	if diff := cmp.Diff([]string{"from-any:80", "from-any:443"}, ingressPorts(lbs)); diff != "" {
		t.Errorf("load-balancer ingress (-want +got):\n%s", diff)
	}

	// Switching the tunnel off closes its ports and opens egress: the API
	// server then dials the tenant's network itself. An operator given no
	// protected networks leaves it open to anywhere.
	e.api.Update(t, got, func() { got.Spec.Addons.Tunnel.Enabled = new(bool) })
	e.mustReconcile(t, tc)
	ctl = e.networkPolicy(t, got, netpolicy.ControlPlaneName(tc.Name))
	if p := ingressPorts(ctl); slices.Contains(p, "from-any:8132") || slices.Contains(p, "from-peers:8134") {
		t.Errorf("control-plane ingress %v without the tunnel, want no tunnel port", p)
	}
	if n := len(ctl.Spec.Egress); n != 3 || len(ctl.Spec.Egress[2].To)+len(ctl.Spec.Egress[2].Ports) != 0 {
		t.Errorf("control-plane egress %+v without the tunnel, want an open rule after the gateway and DNS", ctl.Spec.Egress)
	}
	if c := wantCondition(t, e.get(t, tc), kv1.ConditionNetworkFenced, metav1.ConditionTrue, kv1.ReasonNetworkPoliciesApplied); !strings.Contains(c.Message, "the admin cluster included") {
		t.Errorf("NetworkFenced message %q does not say the admin cluster is reachable", c.Message)
	}

	// Given the admin cluster's networks, the operator takes them out of
	// that egress; the API server accepts the exceptions (each a strict
	// subset of 0.0.0.0/0), and the gateway and DNS rules stay.
	protected, err := netpolicy.ParseProtectedNetworks([]string{"10.200.0.0/16", "10.199.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	e.r.ProtectedNetworks = protected
	e.mustReconcile(t, tc)
	ctl = e.networkPolicy(t, got, netpolicy.ControlPlaneName(tc.Name))
	want3 := networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
		CIDR: "0.0.0.0/0", Except: []string{"10.199.0.1/32", "10.200.0.0/16"}}}}}
	if n := len(ctl.Spec.Egress); n != 3 {
		t.Fatalf("control-plane egress %+v with protected networks, want the gateway, DNS and the tenant's network", ctl.Spec.Egress)
	}
	if diff := cmp.Diff(want3, ctl.Spec.Egress[2]); diff != "" {
		t.Errorf("control-plane egress to the tenant's network (-want +got):\n%s", diff)
	}
	if gw := ctl.Spec.Egress[0]; len(gw.To) != 1 || gw.To[0].PodSelector == nil || !cmp.Equal(gw.To[0].PodSelector.MatchLabels, gatewaydeploy.Labels(e.ds.Name)) {
		t.Errorf("control-plane egress to the gateway %+v with protected networks, want Datastore %s's gateway pods", gw, e.ds.Name)
	}
	if c := wantCondition(t, e.get(t, tc), kv1.ConditionNetworkFenced, metav1.ConditionTrue, kv1.ReasonNetworkPoliciesApplied); !strings.Contains(c.Message, "anywhere but the admin cluster's networks 10.199.0.1/32,10.200.0.0/16") {
		t.Errorf("NetworkFenced message %q does not name the protected networks", c.Message)
	}
}

// TestNetworkPoliciesInSharedNamespace: in the namespace the operator and
// the gateways run in, the catch-all must not select them.
func TestNetworkPoliciesInSharedNamespace(t *testing.T) {
	t.Parallel()
	e := start(t)
	// The test's gateways run in the test's namespace, like the
	// operator's own in production.
	tc := e.tenant(t, "shared", nil)
	e.mustReconcile(t, tc)
	e.mustReconcile(t, tc)
	got := e.get(t, tc)
	wantCondition(t, got, kv1.ConditionNetworkFenced, metav1.ConditionTrue, kv1.ReasonNetworkPoliciesApplied)
	deny := e.networkPolicy(t, got, netpolicy.DefaultDenyName(tc.Name))
	if diff := cmp.Diff(map[string]string{cp.LabelTenant: tc.Name}, deny.Spec.PodSelector.MatchLabels); diff != "" {
		t.Errorf("catch-all in the gateways' namespace selects (-want +got):\n%s", diff)
	}
}

// TestNetworkPolicyRefused: a policy the admin cluster refuses stops the
// reconcile before the control plane's Deployment, with NetworkFenced
// False and a Warning Event; the retry applies it and goes on.
func TestNetworkPolicyRefused(t *testing.T) {
	t.Parallel()
	e := start(t)
	tc := e.tenant(t, "fence-refused", nil)
	e.mustReconcile(t, tc)
	e.emitted()
	refused := errors.New("injected: networkpolicies is forbidden")
	e.r.Client = e.intercepted(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*networkingv1.NetworkPolicy); ok {
				return refused
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	if _, err := e.reconcile(t, tc); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with NetworkPolicies refused returned %v, want its error", err)
	}
	got := e.get(t, tc)
	if c := wantCondition(t, got, kv1.ConditionNetworkFenced, metav1.ConditionFalse, kv1.ReasonNetworkPoliciesFailed); !strings.Contains(c.Message, refused.Error()) {
		t.Errorf("NetworkFenced message %q does not carry the error", c.Message)
	}
	if e.exists(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}) {
		t.Error("the control plane's Deployment was applied although its NetworkPolicies were refused")
	}
	wantEvent(t, e.emitted(), "Warning "+kv1.ReasonNetworkPoliciesFailed)

	e.r.Client = e.api.Client
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	wantCondition(t, got, kv1.ConditionNetworkFenced, metav1.ConditionTrue, kv1.ReasonNetworkPoliciesApplied)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	for _, name := range []string{netpolicy.DefaultDenyName(tc.Name), netpolicy.ControlPlaneName(tc.Name), netpolicy.LoadBalancersName(tc.Name)} {
		pol := &networkingv1.NetworkPolicy{}
		if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tc.Namespace, Name: name}, pol); apierrors.IsNotFound(err) {
			t.Errorf("NetworkPolicy %s missing after the retry", name)
		} else if err != nil {
			t.Fatal(err)
		}
	}
}
