// Package tenantbootstrap renders what the operator puts inside each tenant
// cluster, through the tenant's own API, so that the unmodified upstream
// `kubeadm join` can join a worker with only a token and a CA hash: the
// signed cluster-info ConfigMap (signed by the controller manager's
// bootstrap signer), the RBAC that lets bootstrap tokens create and get
// node certificates approved, the kubeadm and kubelet configuration
// ConfigMaps that join reads, and the kube-proxy and CoreDNS addons. All of
// it is a pure function of Params.
package tenantbootstrap
