// Package release is the version and image-reference policy shared by the
// operator and the local platform: which Kubernetes releases are supported,
// which etcd and CoreDNS releases run, and how an image reference is formed.
package release
