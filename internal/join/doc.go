// Package join makes the credentials a worker needs to join a tenant
// cluster with the upstream `kubeadm join`: a bootstrap token (a Secret in
// the tenant's kube-system, with an expiry) and the hash of the tenant's
// CA public key, printed as the exact join command.
package join
