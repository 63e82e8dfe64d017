package tenantcluster

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/netpolicy"
	"kubinception.dev/kubinception/internal/tenantlb"
)

// reconcileNetworkPolicies applies the tenant's NetworkPolicies: its
// control plane reachable only on the API server's and the tunnel's ports
// and reaching only its gateway and DNS, its load balancers likewise, and
// everything else in the namespace denied. It runs before the control
// plane's Deployment is applied, so no control-plane pod starts unfenced;
// a policy that cannot be applied stops the reconcile there, with
// NetworkFenced False and a Warning Event saying why.
//
// The policies are not watched (the operator's cache is filtered by label
// only for the kinds it names, so a watch would cache every NetworkPolicy
// of the admin cluster): one deleted by hand is back at the next
// reconcile, every 15 seconds for a Ready tenant.
func (r *Reconciler) reconcileNetworkPolicies(ctx context.Context, s *scope) (ctrl.Result, error) {
	p, err := r.networkPolicyParams(ctx, s)
	if err != nil {
		s.fail(kv1.ConditionNetworkFenced, kv1.ReasonNetworkPoliciesFailed, fmt.Sprintf("cannot list the tenant's load balancers: %v", err))
		return ctrl.Result{}, fmt.Errorf("list load balancers: %w", err)
	}
	for _, pol := range netpolicy.Policies(p) {
		if err := r.apply(ctx, s.tc, pol); err != nil {
			s.fail(kv1.ConditionNetworkFenced, kv1.ReasonNetworkPoliciesFailed,
				fmt.Sprintf("cannot apply NetworkPolicy %s: %v; the control plane is not started or changed until it is in place", pol.Name, err))
			return ctrl.Result{}, fmt.Errorf("apply NetworkPolicy %s: %w", pol.Name, err)
		}
	}
	s.succeed(kv1.ConditionNetworkFenced, kv1.ReasonNetworkPoliciesApplied, fencedMessage(p, s.etcd.name))
	return ctrl.Result{}, nil
}

// networkPolicyParams gathers what the policies depend on: the API
// server's port from the exposure phase, the gateway of the Datastore the
// datastore phase resolved, and the ports of the load balancers already
// running (a new one is added by the reconcile its Deployment's creation
// brings).
func (r *Reconciler) networkPolicyParams(ctx context.Context, s *scope) (netpolicy.Params, error) {
	tc := s.tc
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.InNamespace(tc.Namespace), client.MatchingLabels(tenantlb.Labels(tc.Name, ""))); err != nil {
		return netpolicy.Params{}, err
	}
	var ports []int32
	for _, d := range deps.Items {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, port := range c.Ports {
				if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
					ports = append(ports, port.ContainerPort)
				}
			}
		}
	}
	var movedFrom *netpolicy.Peer
	if m := tc.Status.Migration; m != nil && m.Source != "" && m.Source != s.etcd.name {
		movedFrom = &netpolicy.Peer{Namespace: r.GatewayNamespace, Labels: gatewaydeploy.Labels(m.Source)}
	}
	return netpolicy.Params{
		MovedFrom: movedFrom,
		Tenant:    tc.Name, Namespace: tc.Namespace,
		APIServerPort: s.exposure.port, Tunnel: tc.Spec.Addons.Tunnel.IsEnabled(),
		Gateway:           netpolicy.Peer{Namespace: r.GatewayNamespace, Labels: gatewaydeploy.Labels(s.etcd.name)},
		Operator:          netpolicy.Peer{Namespace: install.Namespace, Labels: install.OperatorLabels()},
		LoadBalancerPorts: ports,
		SharedNamespace:   r.sharedNamespace(tc.Namespace),
		ProtectedNetworks: r.ProtectedNetworks,
	}, nil
}

// sharedNamespace says a namespace holds pods of the platform's own (the
// operator and gateways, Kubernetes' system pods), which a catch-all
// denying every pod of the namespace would cut off.
func (r *Reconciler) sharedNamespace(ns string) bool {
	switch ns {
	case install.Namespace, r.GatewayNamespace, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease:
		return true
	}
	return false
}

// fencedMessage says, for NetworkFenced, what the policies allow.
func fencedMessage(p netpolicy.Params, datastore string) string {
	in := []string{fmt.Sprintf("TCP %d (API server)", p.APIServerPort)}
	if p.Tunnel {
		in = append(in, "8132 (tunnel agents) from anywhere", "8134 from the tenant's load balancers")
	} else {
		in[0] += " from anywhere"
	}
	in = append(in, "any port from the operator")
	out := fmt.Sprintf("Datastore %q's gateway and DNS", datastore)
	if !p.Tunnel {
		if len(p.ProtectedNetworks) == 0 {
			out = "anywhere, the admin cluster included (without the tunnel the API server dials the tenant's network directly, and the operator was given no protected networks)"
		} else {
			nets := make([]string, len(p.ProtectedNetworks))
			for i, n := range p.ProtectedNetworks {
				nets[i] = n.String()
			}
			out += fmt.Sprintf(", and anywhere but the admin cluster's networks %s (without the tunnel the API server dials the tenant's network directly)", strings.Join(nets, ","))
		}
	}
	others := "every other pod of the namespace"
	if p.SharedNamespace {
		others = "the tenant's other pods (the namespace is shared with the platform's)"
	}
	return fmt.Sprintf("control plane reachable on %s; it reaches %s; load balancers reachable on the ports they serve and reach only the tunnel; %s denied both ways (enforced where the admin cluster's network plugin enforces NetworkPolicy)",
		strings.Join(in, ", "), out, others)
}
