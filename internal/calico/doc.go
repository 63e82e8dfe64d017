// Package calico renders what Calico's Felix and CNI plugin need in a
// cluster where they enforce NetworkPolicy: Calico's CustomResourceDefinitions
// (embedded from the Calico release kubinception builds), the roles Felix and
// the CNI plugin run under, the ClusterInformation Felix waits for, an
// IPPool per pod range (which makes Felix masquerade pod traffic leaving the
// pod network), the CNI network configuration and Felix's settings.
//
// Calico runs in "policy-only" form: pod addresses come from the node's
// pod range through host-local IPAM, each pod is reached through a routed
// /32 on its own interface, and Felix polices those interfaces. Routing
// between nodes stays with whoever routes pod ranges today.
package calico
