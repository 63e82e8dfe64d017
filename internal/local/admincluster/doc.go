// Package admincluster brings up, tears down and reports on the local admin
// cluster: a real single-node Kubernetes on this machine, built from
// upstream sources, plus the shared multi-tenant etcd ("the datastore").
//
// Nothing here needs Docker, a registry or systemd. `Up` installs the host
// packages it lacks, starts a supervisor that keeps containerd and the
// kubelet running, imports images packed by package images, and writes
// static pod manifests for the admin control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler), kube-proxy and the three
// datastore members, as kubeadm does. Every step checks what is already in
// place, so Up is idempotent and resumes after a crash half-way. `Down`
// stops what Up started and undoes its host changes — mounts, network
// namespaces, iptables chains, interfaces, sysctls, cgroups — while keeping
// the admin etcd's and the datastore's data, so Down then Up loses nothing.
package admincluster
