// Package netpolicy renders the NetworkPolicies that wall off a tenant's
// pods in the admin cluster: its control plane may be reached only on the
// API server's and the tunnel's ports (and by the operator), and may reach
// only its Datastore's gateway and DNS (without the tunnel, also anything
// outside the admin cluster's protected networks: the tenant's network
// its API server dials itself); its load balancers may be reached
// only on the ports they serve and may reach only the tenant's tunnel;
// anything else in the namespace is denied both ways. Everything here is
// a pure function of Params; the TenantCluster reconciler applies the
// result.
//
// NetworkPolicies only bind where the admin cluster's network plugin
// enforces them. Traffic from the node a pod runs on (the kubelet's
// probes) is always allowed, whatever a policy says.
package netpolicy
