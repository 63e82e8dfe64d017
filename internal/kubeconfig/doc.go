// Package kubeconfig renders kubeconfig files for a cluster endpoint and a
// client certificate, the form every component and customer consumes.
package kubeconfig
