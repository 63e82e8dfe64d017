// Package nodeconfig renders the configuration every node of ours runs
// with — the admin node and local workers alike: containerd with its own
// root, state and socket and the CRI settings this kind of machine needs,
// and the kubelet settings this kind of machine needs.
package nodeconfig
