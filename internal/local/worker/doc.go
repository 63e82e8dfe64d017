// Package worker runs local worker machines for tenant clusters: each
// worker is its own "host" on this machine — a network namespace with its
// own address on a per-tenant segment, a mount namespace in which
// /etc/kubernetes, /var/lib/kubelet, /run/containerd and the CNI paths are
// the worker's own, and its own containerd and kubelet kept running by a
// supervisor inside those namespaces. It joins its tenant with the
// upstream `kubeadm join`, run inside the same namespaces, exactly as on a
// separate machine.
//
// Pod networking: each tenant's workers share a bridge on the host
// (kubi-t<segment>, 10.210.<segment>.0/24), every worker runs the CNI
// bridge plugin for its node's pod range (assigned by the tenant's
// controller manager), and each worker routes the other workers' pod
// ranges through their addresses. Tenants never share a segment, so their
// pod networks cannot collide even with identical ranges.
package worker
