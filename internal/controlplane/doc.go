// Package controlplane renders a tenant's control plane as admin-cluster
// objects: the Deployment running kube-apiserver, kube-controller-manager
// and kube-scheduler in one pod, the Service in front of the API server,
// and the certificate specs and file names they share. Everything here is
// a pure function of Params; applying the objects is the reconciler's job.
package controlplane
